module fixtures.test/app

go 1.21

require fixtures.test/greet v1.0.0
