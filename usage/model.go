package usage

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
)

// maxModel bounds the length of a model name sessctl accepts.
const maxModel = 200

// ErrNoModel is wrapped by the error of a request that names no model.
var ErrNoModel = errors.New("the request names no model")

// Model returns the model a JSON request body names in its top-level
// "model" member, read the way the upstream will read it. It fails when
// the body is not a JSON object, has no "model", has a "model" that is not
// a non-empty string, or has several members that a decoder could take
// for "model" (duplicates, or names differing only in case).
func Model(body []byte) (string, error) {
	ms, _, err := members(body)
	if err != nil {
		return "", fmt.Errorf("usage: model: %w", err)
	}
	m, found, err := lookup(ms, "model")
	if err != nil {
		return "", fmt.Errorf("usage: model: %w", err)
	}
	if !found {
		return "", fmt.Errorf("usage: model: %w", ErrNoModel)
	}
	var s string
	if json.Unmarshal(m.Value, &s) != nil || s == "" || len(s) > maxModel {
		return "", errors.New("usage: model: \"model\" is not a model name")
	}
	return s, nil
}

// EventModel returns the model a Responses API WebSocket response.create
// event names: its top-level "model", or the "model" of its "response"
// object. Both given and different, or either ambiguous, is an error.
func EventModel(msg []byte) (string, error) {
	top, topErr := Model(msg)
	ms, _, err := members(msg)
	if err != nil {
		return "", fmt.Errorf("usage: model: %w", err)
	}
	resp, found, err := lookup(ms, "response")
	if err != nil {
		return "", fmt.Errorf("usage: model: %w", err)
	}
	if !found || string(resp.Value) == "null" {
		return top, topErr
	}
	inner, innerErr := Model(resp.Value)
	for _, err := range []error{topErr, innerErr} {
		if err != nil && !errors.Is(err, ErrNoModel) {
			return "", err
		}
	}
	switch {
	case topErr == nil && innerErr == nil && top != inner:
		return "", errors.New("usage: model: the event names two models")
	case topErr == nil:
		return top, nil
	case innerErr == nil:
		return inner, nil
	}
	return "", topErr
}

// Allowed reports whether model matches one of the globs (path.Match
// syntax, case-sensitive, whole name). An empty list allows nothing.
func Allowed(globs []string, model string) bool {
	for _, g := range globs {
		if ok, err := path.Match(g, model); err == nil && ok {
			return true
		}
	}
	return false
}
