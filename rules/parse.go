package rules

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// ParseError is an error in a rules file, located by line and rule.
type ParseError struct {
	Line int    // 1-based line, 0 if unknown
	Rule string // the rule's name, or "#n" for the nth rule if it has none
	Msg  string
}

// Error formats the error as "line N: rule NAME: message".
func (e *ParseError) Error() string {
	switch {
	case e.Rule != "" && e.Line > 0:
		return fmt.Sprintf("line %d: rule %s: %s", e.Line, e.Rule, e.Msg)
	case e.Rule != "":
		return fmt.Sprintf("rule %s: %s", e.Rule, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Load reads and parses a rules file.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: read %s: %w", path, err)
	}
	s, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("rules: %s: %w", path, err)
	}
	return s, nil
}

// Parse parses a rules file:
//
//	rules:
//	  - name: aws-access-key
//	    pattern: '\b(?:AKIA|ASIA)[A-Z2-7]{16}\b'
//	    action: mask            # mask | block | approve
//	    scope: [request, response]
//	    replacement: '[MASKED:aws-access-key]'
//
// Errors are *ParseError values (wrapped) naming the line and the rule.
func Parse(data []byte) (*Set, error) {
	s, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return s, nil
}

func parse(data []byte) (*Set, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ParseError{Msg: err.Error()}
	}
	if doc.Kind == 0 { // an empty file
		return newSet(nil), nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ParseError{Line: root.Line, Msg: "want a mapping with a rules: list"}
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "rules":
			if list != nil {
				return nil, &ParseError{Line: k.Line, Msg: "rules: given twice"}
			}
			list = v
		default:
			return nil, &ParseError{Line: k.Line, Msg: fmt.Sprintf("unknown key %q", k.Value)}
		}
	}
	if list == nil {
		return nil, &ParseError{Line: root.Line, Msg: "no rules: list"}
	}
	if list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
		return newSet(nil), nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, &ParseError{Line: list.Line, Msg: "rules: want a list"}
	}
	var out []*compiled
	lines := map[string]int{}
	for i, n := range list.Content {
		r, err := parseRule(n, i+1)
		if err != nil {
			return nil, err
		}
		if first, dup := lines[r.Name]; dup {
			return nil, &ParseError{Line: r.Line, Rule: strconv.Quote(r.Name), Msg: fmt.Sprintf("duplicate name (first at line %d)", first)}
		}
		lines[r.Name] = r.Line
		c, err := compile(r)
		if err != nil {
			return nil, &ParseError{Line: r.Line, Rule: strconv.Quote(r.Name), Msg: err.Error()}
		}
		out = append(out, c)
	}
	return newSet(out), nil
}

// parseRule reads the fields of the nth rule.
func parseRule(n *yaml.Node, nth int) (Rule, error) {
	id := "#" + strconv.Itoa(nth)
	if n.Kind != yaml.MappingNode {
		return Rule{}, &ParseError{Line: n.Line, Rule: id, Msg: "want a mapping"}
	}
	// Find the name first, so that every error can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode && n.Content[i+1].Value != "" {
			id = strconv.Quote(n.Content[i+1].Value)
		}
	}
	r := Rule{Line: n.Line}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fail := func(format string, a ...any) error {
			return &ParseError{Line: v.Line, Rule: id, Msg: k.Value + ": " + fmt.Sprintf(format, a...)}
		}
		if seen[k.Value] {
			return Rule{}, &ParseError{Line: k.Line, Rule: id, Msg: fmt.Sprintf("%s: given twice", k.Value)}
		}
		seen[k.Value] = true
		var err error
		switch k.Value {
		case "name":
			r.Name, err = scalar(v)
			if err == nil && !validName(r.Name) {
				err = errors.New("use letters, digits, '.', '_' and '-'")
			}
		case "description":
			r.Description, err = scalar(v)
		case "pattern":
			r.Pattern, err = scalar(v)
		case "action":
			var a string
			a, err = scalar(v)
			r.Action = Action(a)
		case "scope":
			r.Scope, err = scalars(v)
		case "replacement":
			r.Replacement, err = scalar(v)
		case "message":
			r.Message, err = scalar(v)
		case "entropy":
			err = v.Decode(&r.Entropy)
		case "allow":
			r.Allow, err = scalars(v)
		case "holdback":
			err = v.Decode(&r.Holdback)
		default:
			return Rule{}, &ParseError{Line: k.Line, Rule: id, Msg: fmt.Sprintf("unknown field %q", k.Value)}
		}
		if err != nil {
			return Rule{}, fail("%v", err)
		}
	}
	if r.Name == "" {
		return Rule{}, &ParseError{Line: n.Line, Rule: id, Msg: "missing name"}
	}
	return r, nil
}

func scalar(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errors.New("want a string")
	}
	return n.Value, nil
}

// scalars reads a list of strings, or one string.
func scalars(n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("want a list of strings")
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, err := scalar(c)
		if err != nil {
			return nil, errors.New("want a list of strings")
		}
		out = append(out, s)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
