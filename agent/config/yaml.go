package config

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseYAML reads a YAML document into the neutral tree, keeping line numbers.
func parseYAML(data []byte) (*node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml.v3 starts its messages with "yaml: "; the problem is reported under "yaml".
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 { // empty file
		return &node{kind: mappingNode}, nil
	}
	return fromYAML(&doc, 0)
}

func fromYAML(y *yaml.Node, depth int) (*node, error) {
	if depth > 32 {
		return nil, fmt.Errorf("line %d: nesting too deep", y.Line)
	}
	switch y.Kind {
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{kind: mappingNode}, nil
		}
		return fromYAML(y.Content[0], depth+1)
	case yaml.AliasNode:
		return nil, fmt.Errorf("line %d: YAML aliases are not supported", y.Line)
	case yaml.ScalarNode:
		if y.Tag == "!!null" {
			return &node{kind: nullNode, line: y.Line}, nil
		}
		return &node{kind: scalarNode, line: y.Line, value: y.Value}, nil
	case yaml.SequenceNode:
		n := &node{kind: sequenceNode, line: y.Line}
		for _, c := range y.Content {
			item, err := fromYAML(c, depth+1)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, item)
		}
		return n, nil
	case yaml.MappingNode:
		n := &node{kind: mappingNode, line: y.Line}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping keys must be plain words", k.Line)
			}
			if n.get(k.Value) != nil {
				return nil, fmt.Errorf("line %d: key %q appears twice", k.Line, k.Value)
			}
			val, err := fromYAML(v, depth+1)
			if err != nil {
				return nil, err
			}
			if val.kind != scalarNode || val.line == 0 {
				val.line = k.Line
			}
			n.keys = append(n.keys, k.Value)
			n.vals = append(n.vals, val)
		}
		return n, nil
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", y.Line)
}
