package main

import (
	"fmt"

	"fixtures.test/greet"
)

func main() {
	fmt.Println(greet.Hello("go"))
}
