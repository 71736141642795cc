package journey

import (
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/report"
)

// conversion: as DESIGN.md writes it parses; without the section the goal
// is the default; each mistake is refused at its line and column.
func TestConversionGoalInTheJourneyFile(t *testing.T) {
	t.Parallel()
	j, err := Parse("j.yaml", []byte("conversion:\n  event: order_completed\n  value: revenue\n  window: 5d\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (report.Goal{Event: "order_completed", Value: "revenue", Window: 5 * 24 * time.Hour}); j.Conversion != want {
		t.Errorf("goal %+v, want %+v", j.Conversion, want)
	}
	j, err = Parse("j.yaml", []byte("conversion:\n  event: subscription_started\n  window: 12h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (report.Goal{Event: "subscription_started", Window: 12 * time.Hour}); j.Conversion != want {
		t.Errorf("goal without value %+v, want %+v (no revenue)", j.Conversion, want)
	}
	j, err = Parse("j.yaml", []byte("conversion:\n  event: trial_upgraded\n  value: amount\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (report.Goal{Event: "trial_upgraded", Value: "amount", Window: 5 * 24 * time.Hour}); j.Conversion != want {
		t.Errorf("goal without window %+v, want %+v (the default window)", j.Conversion, want)
	}
	j, err = Parse("j.yaml", []byte("webhooks: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if j.Conversion != report.DefaultGoal() {
		t.Errorf("no section: goal %+v, want the default %+v", j.Conversion, report.DefaultGoal())
	}
	for name, c := range map[string]struct{ src, want string }{
		"missing event":     {"conversion:\n  value: revenue\n", "j.yaml:2:3: conversion: missing event"},
		"empty event":       {"conversion:\n  event: ''\n", "j.yaml:2:10: conversion: event must name the event"},
		"event not text":    {"conversion:\n  event: [a, b]\n", "j.yaml:2:10: conversion: event must be text"},
		"engagement event":  {"conversion:\n  event: email_clicked\n", `j.yaml:2:10: conversion: event "email_clicked" is one Waymark records about its own emails`},
		"unknown key":       {"conversion:\n  event: order_completed\n  windw: 5d\n", `j.yaml:3:3: conversion: unknown key "windw" (known: event, value, window); did you mean "window"?`},
		"bad duration":      {"conversion:\n  event: order_completed\n  window: five days\n", `j.yaml:3:11: conversion: window: "five days" is not a duration`},
		"zero window":       {"conversion:\n  event: order_completed\n  window: 0h\n", "j.yaml:3:11: conversion: window must be longer than 0"},
		"too long":          {"conversion:\n  event: order_completed\n  window: 91d\n", "j.yaml:3:11: conversion: window 91d is longer than the most, 90d"},
		"value not text":    {"conversion:\n  event: order_completed\n  value: {a: 1}\n", "j.yaml:3:10: conversion: value must be text"},
		"blank value":       {"conversion:\n  event: order_completed\n  value: ' '\n", "j.yaml:3:10: conversion: value must name the event's property"},
		"not a mapping":     {"conversion: order_completed\n", "j.yaml:1:13: conversion must be a mapping of keys"},
		"section typo":      {"conversions:\n  event: order_completed\n", `j.yaml:1:1: the journey: unknown key "conversions"`},
		"section typo hint": {"conversions:\n  event: order_completed\n", `did you mean "conversion"?`},
		"given twice":       {"conversion:\n  event: a\n  event: b\n", `j.yaml:3:3: conversion: "event" is given twice`},
	} {
		_, err := Parse("j.yaml", []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
	// 90 days is the most, and allowed.
	if j, err := Parse("j.yaml", []byte("conversion:\n  event: order_completed\n  window: 90d\n")); err != nil || j.Conversion.Window != 90*24*time.Hour {
		t.Errorf("90d: %v, %+v", err, j)
	}
}
