module.exports = (name) => `hello, ${name}, from hello-fixture`;
