package main

import (
	"context"
	"os"

	"github.com/sessctl/sessctl/internal/command"
)

func main() {
	os.Exit(command.Main(context.Background(), os.Args))
}
