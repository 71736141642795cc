// Package suggest finds the name a user probably meant: "did you mean
// FirstName?" for Firstname, "stages" for stags.
package suggest

import "strings"

// Closest returns the candidate s probably stands for: one equal to it
// but for case, else the nearest within two edits, else — for s of three
// characters or more — one that starts with it; "" when none is close.
// An edit distance as long as s itself is no resemblance.
func Closest(s string, candidates []string) string {
	for _, c := range candidates {
		if strings.EqualFold(s, c) && s != c {
			return c
		}
	}
	best, bestD := "", 3
	for _, c := range candidates {
		if d := Distance(strings.ToLower(s), strings.ToLower(c)); d < bestD && d < len(s) {
			best, bestD = c, d
		}
	}
	if best == "" && len(s) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(c, s) {
				return c
			}
		}
	}
	return best
}

// Distance is the edit (Levenshtein) distance between a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
