module fixtures.test/greet

go 1.21
