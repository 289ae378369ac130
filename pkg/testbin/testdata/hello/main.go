// Command hello is what package testbin's tests build.
package main

import "fmt"

func main() { fmt.Println("hello") }
