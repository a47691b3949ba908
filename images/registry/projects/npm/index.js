console.log(require("hello-fixture")("npm"));
