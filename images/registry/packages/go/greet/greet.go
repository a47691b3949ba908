// Package greet is a harmless module of coderun's registry fixture.
package greet

// Hello greets name.
func Hello(name string) string {
	return "hello, " + name + ", from fixtures.test/greet"
}
