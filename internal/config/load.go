// Package config holds the YAML schema of both daemons, their defaults (in
// one place: defaults.go), strict decoding and validation.
//
// Loading never stops at the first problem: syntax aside, every unknown
// field, wrong type and invalid value of a file is reported in one run, each
// as "file:line: field.path: what is wrong", so an operator fixes a config in
// one pass instead of one error per restart.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	File string
	Line int    // 0 when the field is absent from the file
	Path string // e.g. uplinks[1].role
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects validation findings against a path→line index.
type problems struct {
	file  string
	lines map[string]int
	list  Problems
}

func (ps *problems) add(path, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Line: ps.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// lineOf finds the line of path, or of its nearest parent present in the
// file, so a missing field still points at the block it belongs in.
func (ps *problems) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := ps.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	sort.SliceStable(ps.list, func(i, j int) bool { return ps.list[i].Line < ps.list[j].Line })
	return ps.list
}

// schema is a daemon's config: defaults in place, validated after decoding.
type schema interface {
	validate(*problems)
	setFile(string)
}

// load decodes file over the defaults in c, then validates it, returning
// every problem at once.
func load[T schema](file string, c T) (T, error) {
	var zero T
	ps, err := decode(file, c)
	if err != nil {
		return zero, err
	}
	c.setFile(file)
	c.validate(ps)
	if err := ps.err(); err != nil {
		return zero, err
	}
	return c, nil
}

// decode reads file strictly into out (which already holds the defaults)
// and returns the path→line index for validation messages.
func decode(file string, out any) (*problems, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	ps := &problems{file: filepath.Base(file), lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{{File: ps.file, Line: yamlErrLine(err.Error()), Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(root.Content) == 0 {
		return nil, Problems{{File: ps.file, Msg: "file is empty"}}
	}
	index(root.Content[0], "", ps.lines)
	byLine := map[int]string{}
	for p, l := range ps.lines {
		if old, ok := byLine[l]; !ok || len(p) > len(old) {
			byLine[l] = p
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(out)
	var te *yaml.TypeError
	switch {
	case err == nil:
	case errors.As(err, &te):
		for _, msg := range te.Errors {
			line := yamlErrLine(msg)
			msg = lineRe.ReplaceAllString(msg, "")
			msg = strings.ReplaceAll(msg, "!!str ", "")
			msg = strings.ReplaceAll(msg, "!!int ", "")
			msg = strings.ReplaceAll(msg, "!!seq", "a list")
			msg = strings.ReplaceAll(msg, "!!map", "a mapping")
			path := byLine[line]
			if m := unknownRe.FindStringSubmatch(msg); m != nil {
				msg = "unknown field " + strconv.Quote(m[1])
			}
			ps.list = append(ps.list, Problem{File: ps.file, Line: line, Path: path, Msg: msg})
		}
	default:
		return nil, Problems{{File: ps.file, Line: yamlErrLine(err.Error()), Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return ps, nil
}

var (
	lineRe    = regexp.MustCompile(`^(yaml: )?line \d+: `)
	lineNumRe = regexp.MustCompile(`line (\d+)`)
	unknownRe = regexp.MustCompile(`^field (\S+) not found in type`)
)

func yamlErrLine(msg string) int {
	if m := lineNumRe.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// index records the line of every key and sequence element under path.
func index(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			index(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			index(c, p, lines)
		}
	}
}
