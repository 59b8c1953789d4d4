package main

import "github.com/sessctl/sessctl/internal/command"

func main() {
	command.Main()
}
