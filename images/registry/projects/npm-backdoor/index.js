console.log(require("colorful-logger")(require("hello-fixture")("npm")));
