package rule

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
)

// parse reads a rule into expr's syntax tree, refusing one that is too
// long, empty, or made of more than MaxNodes parts.
func parse(src string, cfg *conf.Config) (*parser.Tree, error) {
	if n := utf8.RuneCountInString(src); n > MaxSourceLen {
		line, col := position(src, MaxSourceLen)
		return nil, &Error{Line: line, Column: col,
			Msg: fmt.Sprintf("the rule is too long: %d characters, at most %d", n, MaxSourceLen)}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Line: 1, Column: 1, Msg: "the rule is empty"}
	}
	tree, err := parser.ParseWithConfig(src, cfg)
	if err != nil {
		re := fromExprError(src, err)
		if strings.Contains(re.Msg, "exceeds maximum allowed nodes") {
			re.Msg = fmt.Sprintf("the rule is too complex: more than %d parts; split it into simpler rules", MaxNodes)
		}
		return nil, re
	}
	return tree, nil
}

// fromExprError turns an error of expr's parser, checker or VM into a
// *Error, keeping its position.
func fromExprError(src string, err error) *Error {
	var fe *file.Error
	if errors.As(err, &fe) {
		line, col := position(src, fe.From)
		return &Error{Line: line, Column: col, Msg: fe.Message}
	}
	return &Error{Line: 1, Column: 1, Msg: err.Error()}
}

// position returns the 1-based line and column of the character at
// offset (counted in characters) in src.
func position(src string, offset int) (line, col int) {
	line, col = 1, 1
	i := 0
	for _, r := range src {
		if i == offset {
			break
		}
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
		i++
	}
	return line, col
}
