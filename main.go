package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "sessctl: under construction")
	os.Exit(2)
}
