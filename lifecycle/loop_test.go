package lifecycle

import (
	"reflect"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/rule"
)

// A lapsed customer under journey's rules loops: lapsed moves them back to
// decision, where customer holds again, so settling stops short of a stage
// already visited and the next pass moves them on again.
func TestSettleReportsTheMoveBack(t *testing.T) {
	t.Parallel()
	now := clock.Now()
	orders := rule.Aggregate{Kind: rule.AggCount, Event: "order_completed", Window: rule.Window{All: true}}
	sinceOrder := rule.Aggregate{Kind: rule.AggDaysSince, Event: "order_completed"}
	rules := journey(t)

	f := &rule.Facts{Now: now, Stage: rule.Retention, StageEnteredAt: now.Add(-200 * 24 * time.Hour), Values: map[rule.Aggregate]float64{orders: 1, sinceOrder: 120}}
	moves, back, err := settle(rules, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(moves) != 1 || moves[0].Rule != "lapsed" || back == nil || back.Rule != "customer" || back.From != rule.Decision || back.To != rule.Retention {
		t.Fatalf("moves %+v, back %+v; want lapsed, then customer back to retention", moves, back)
	}
	rs, ss, ok := LoopOf(ContactMoves{Moves: moves, Back: back})
	if !ok || !reflect.DeepEqual(rs, []string{"lapsed", "customer"}) || !reflect.DeepEqual(ss, []rule.Stage{rule.Retention, rule.Decision, rule.Retention}) {
		t.Fatalf("LoopOf = %v %v %v", rs, ss, ok)
	}
	l := Loop{Rules: rs, Stages: ss, Contacts: 2, Examples: []string{"a@example.com"}}
	if got, want := l.Sentence(), "rules lapsed (retention → decision) and customer (decision → retention) would move 2 contacts back and forth on every pass (e.g. a@example.com)"; got != want {
		t.Errorf("Sentence() = %q, want %q", got, want)
	}

	// A customer with a recent order settles without a loop.
	f.Values[sinceOrder] = 3
	if moves, back, err := settle(rules, f); err != nil || len(moves) != 0 || back != nil {
		t.Fatalf("a recent customer: moves %+v, back %+v, err %v", moves, back, err)
	}
}
