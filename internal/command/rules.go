package command

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/rules"
	"github.com/urfave/cli/v2"
)

// maxRulesTestInput bounds what "sessctl rules test" reads from stdin.
const maxRulesTestInput = 64 << 20

// rulesCommand is "sessctl rules": show and try the rules.
func rulesCommand() *cli.Command {
	source := []cli.Flag{
		&cli.StringFlag{Name: "rules", Usage: "rules file (default: rules_file of --config, else the built-in secret ruleset)", EnvVars: []string{"SESSCTL_RULES_FILE"}},
		&cli.StringFlag{Name: "config", Usage: "YAML config file whose rules_file to use", EnvVars: []string{"SESSCTL_CONFIG"}},
	}
	return &cli.Command{
		Name:  "rules",
		Usage: "show the rules in force and try them on text",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "print the rules (name, action, scope, description)",
				ArgsUsage: " ",
				Flags: append(source, &cli.BoolFlag{
					Name: "yaml", Usage: "print the built-in ruleset as YAML, a starting point for a rules file",
				}),
				Action: rulesList,
			},
			{
				Name:      "test",
				Usage:     "apply the rules to stdin and show what fires and the masked text (exit 1 if a block or approve rule fires)",
				ArgsUsage: "< text",
				Flags: append(source, &cli.BoolFlag{
					Name: "response", Usage: "apply the response rules instead of the request rules",
				}),
				Action: rulesTest,
			},
		},
	}
}

// rulesSet loads the rules the flags name.
func rulesSet(c *cli.Context) (*rules.Set, string, error) {
	path := c.String("rules")
	if path == "" && c.String("config") != "" {
		cfg, err := config.Load(c.String("config"))
		if err != nil {
			return nil, "", err
		}
		path = cfg.RulesFile
	}
	if path == "" {
		return rules.Default(), "built-in ruleset", nil
	}
	s, err := rules.Load(path)
	if err != nil {
		return nil, "", err
	}
	return s, path, nil
}

// rulesList is "sessctl rules list".
func rulesList(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("sessctl rules list: unexpected argument %q", c.Args().First()), 2)
	}
	if c.Bool("yaml") {
		_, err := c.App.Writer.Write(rules.DefaultYAML())
		return err
	}
	s, from, err := rulesSet(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "%d rules from %s\n", s.Len(), from)
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACTION\tSCOPE\tDESCRIPTION")
	for _, r := range s.Rules() {
		desc := r.Description
		if desc == "" {
			desc = r.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Action, strings.Join(r.Scope, ","), desc)
	}
	return tw.Flush()
}

// rulesTest is "sessctl rules test".
func rulesTest(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("sessctl rules test: unexpected argument %q (the text comes on stdin)", c.Args().First()), 2)
	}
	s, _, err := rulesSet(c)
	if err != nil {
		return err
	}
	in, err := io.ReadAll(io.LimitReader(c.App.Reader, maxRulesTestInput+1))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	if len(in) > maxRulesTestInput {
		return cli.Exit(fmt.Sprintf("sessctl rules test: input larger than %d bytes", maxRulesTestInput), 2)
	}
	res := s.Request(in)
	if c.Bool("response") {
		res = s.Response(in)
	}
	w := c.App.ErrWriter
	if len(res.Hits) == 0 {
		fmt.Fprintln(w, "no rule fired")
	}
	for _, h := range res.Hits {
		fmt.Fprintf(w, "fired: %s (%s, %s) x%d\n", h.Rule, h.Action, h.Scope, h.Count)
	}
	if _, err := c.App.Writer.Write(res.Body); err != nil {
		return err
	}
	switch {
	case res.Block != nil:
		return cli.Exit(fmt.Sprintf("blocked by rule %s", describe(res.Block)), 1)
	case res.Approve != nil:
		return cli.Exit(fmt.Sprintf("approval required by rule %s", describe(res.Approve)), 1)
	}
	return nil
}

func describe(r *rules.Rule) string {
	if r.Message == "" {
		return r.Name
	}
	return r.Name + ": " + r.Message
}
