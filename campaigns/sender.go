package campaigns

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/mailer"
	"github.com/waymark/waymark/rule"
	"github.com/waymark/waymark/templates"
)

// SenderConfig tunes a Sender.
type SenderConfig struct {
	From        string
	Connections int // concurrent SMTP connections
	Batch       int // sends claimed at once
	MaxAttempts int // temporary failures before a send fails
	// Rate caps messages per second across all connections (0: none).
	Rate   float64
	Holder string
	// Installation is this installation's id (store.InstallationID). A
	// Message-ID is <CONTACT.SEND.INSTALLATION@domain-of-From>: derived
	// from the send, so a resend is recognisable, and globally unique,
	// so another installation's send 1 of contact 1 is another email.
	Installation string
	// Decorate adds what every marketing email carries (unsubscribe
	// headers, footer and, when the journey's tracking setting is on,
	// tracked links and the open pixel); may be nil.
	// unsubscribe and preferences are the send's URLs from Links.
	Decorate func(m *mailer.Message, d *Due, tracking bool, unsubscribe, preferences string)
	// Links returns the unsubscribe and preferences URLs of a send.
	Links func(d *Due) (unsubscribe, preferences string)
	// ReturnPath, if set, gives each send its envelope sender (a VERP
	// address naming the send, where bounces return); nil: From.
	ReturnPath func(contactID, sendID int64) string
}

// Sender sends what is due, exactly once per (enrolment, step): each
// message is recorded as on the wire before SMTP sees it, so a crash
// leaves at most one message per open connection in doubt, marked unknown
// and never resent.
type Sender struct {
	store  SendStore
	mail   Mailer
	runner *Runner
	log    *slog.Logger
	now    func() time.Time
	cfg    SenderConfig

	wake chan struct{}

	// rate limiting: the next free slot.
	rateMu   sync.Mutex
	nextSlot time.Time

	mu       sync.Mutex
	compiled map[string]*templates.Compiled // name@version
	journey  *sendJourney                   // the last loaded

	zones zoneCache // the contacts' time zones, for quiet hours

	presenceMu sync.Mutex
	release    func() // of the presence held since the first pass; nil before
}

// messageID is the local part of a send's Message-ID (see
// SenderConfig.Installation).
func (s *Sender) messageID(d *Due) string {
	if s.cfg.Installation == "" {
		return fmt.Sprintf("%d.%d", d.ContactID, d.ID)
	}
	return fmt.Sprintf("%d.%d.%s", d.ContactID, d.ID, s.cfg.Installation)
}

// NewSender returns a sender; Run starts it.
func NewSender(store SendStore, mail Mailer, runner *Runner, log *slog.Logger, now func() time.Time, cfg SenderConfig) *Sender {
	if cfg.Connections <= 0 {
		cfg.Connections = 4
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	return &Sender{store: store, mail: mail, runner: runner, log: log, now: now, cfg: cfg, wake: make(chan struct{}, 1), compiled: map[string]*templates.Compiled{}}
}

// Wake makes the sender look for due sends now.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stats counts what a pass did.
type Stats struct {
	Sent, Failed, Unknown, Suppressed, Skipped, Cancelled, Expired, Delayed, Retried int
	// Waiting sends were due but claimed by another sender still alive:
	// they wait for it, or until WaitingUntil (its lease) if it stopped.
	Waiting      int
	WaitingUntil time.Time
}

func (st *Stats) add(o Stats) {
	st.Sent += o.Sent
	st.Failed += o.Failed
	st.Unknown += o.Unknown
	st.Suppressed += o.Suppressed
	st.Skipped += o.Skipped
	st.Cancelled += o.Cancelled
	st.Expired += o.Expired
	st.Delayed += o.Delayed
	st.Retried += o.Retried
	st.Waiting += o.Waiting
	if o.WaitingUntil.After(st.WaitingUntil) {
		st.WaitingUntil = o.WaitingUntil
	}
}

// holdPresence holds the sender's presence from its first pass until Close.
func (s *Sender) holdPresence(ctx context.Context) error {
	s.presenceMu.Lock()
	defer s.presenceMu.Unlock()
	if s.release != nil {
		return nil
	}
	release, err := s.store.HoldPresence(ctx, s.cfg.Holder, heartbeatTTL)
	if err != nil {
		return err
	}
	s.release = release
	return nil
}

// Close lets go of the sender's presence; call it once it sends no more.
// Its claims wait for its lease to expire, or are released by its next
// pass.
func (s *Sender) Close() {
	if s == nil {
		return
	}
	s.presenceMu.Lock()
	defer s.presenceMu.Unlock()
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

const heartbeatTTL = 15 * time.Second

// producers is how many goroutines claim, decide and render at once.
const producers = 2

// Run sends due emails until ctx is done: on Wake, and every poll.
func (s *Sender) Run(ctx context.Context, poll time.Duration) {
	defer s.Close()
	go func() {
		t := time.NewTicker(heartbeatTTL / 3)
		defer t.Stop()
		for {
			if err := s.store.Heartbeat(ctx, s.cfg.Holder, heartbeatTTL); err != nil && ctx.Err() == nil {
				s.log.Error("sender heartbeat", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if _, err := s.SendDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("sending", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// SendDue sends everything due now, batch after batch, and returns what it
// did.
func (s *Sender) SendDue(ctx context.Context) (Stats, error) {
	var total Stats
	if err := s.holdPresence(ctx); err != nil {
		return total, err
	}
	if err := s.store.Heartbeat(ctx, s.cfg.Holder, heartbeatTTL); err != nil {
		return total, err
	}
	if err := s.store.ReleaseClaims(ctx, s.cfg.Holder); err != nil {
		return total, err
	}
	if n, err := s.store.RecoverInDoubt(ctx); err != nil {
		return total, err
	} else if n > 0 {
		s.log.Warn("sends left on the wire by a stopped sender are marked unknown", "count", n)
		total.Unknown += n
	}
	j, err := s.journeyNow(ctx)
	if err != nil {
		return total, err
	}
	defs := j.defs
	// Batches are claimed and rendered while the connections send the
	// previous ones, by producers that each claim their own share of the
	// contacts (so that the frequency cap of a contact is decided by one
	// of them); each has at most about two batches claimed at a time.
	d := s.startDelivery(ctx, s.cfg.Batch)
	var (
		mu      sync.Mutex
		passErr error
	)
	failed := func(err error) bool {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && passErr == nil {
			passErr = err
		}
		return passErr != nil
	}
	// produce claims, decides and renders its share's batches until none
	// is due; it reports whether it found any.
	// Without a frequency cap the claim need not read each contact's
	// recent sends.
	capWindow := defs.Settings.CapPer
	if defs.Settings.CapMax <= 0 {
		capWindow = 0
	}
	produce := func(part, parts int) (found bool) {
		for !failed(nil) {
			claimedAt := time.Now()
			now := s.now()
			batch, err := s.store.ClaimDue(ctx, s.cfg.Holder, s.cfg.Batch, now, capWindow, part, parts)
			if failed(err) || len(batch) == 0 {
				return found
			}
			found = true
			d.prune(claimedAt, part, parts)
			st, items, err := s.process(ctx, j, batch, now, func(contact int64) []time.Time { return d.sentTo(contact, claimedAt) })
			mu.Lock()
			total.add(st)
			mu.Unlock()
			if failed(err) || !d.enqueue(items) {
				return found
			}
		}
		return found
	}
	for {
		var (
			wg    sync.WaitGroup
			found atomic.Bool
		)
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if produce(p, producers) {
					found.Store(true)
				}
			}()
		}
		wg.Wait()
		if !found.Load() || failed(nil) || ctx.Err() != nil {
			break
		}
		// What the connections are finishing may queue 0-delay next
		// steps: let them finish, then look once more.
		d.wait()
	}
	st, err := d.close()
	total.add(st)
	if err == nil && passErr == nil && ctx.Err() == nil {
		// Said, so that a pass that sends nothing is not a mystery.
		n, until, werr := s.store.ClaimedElsewhere(ctx, s.cfg.Holder, s.now())
		if werr != nil {
			return total, werr
		}
		if n > 0 {
			total.Waiting, total.WaitingUntil = n, until
			s.log.Warn("due sends are claimed by another sender that is still running: they wait for it, or for its lease to run out if it stopped",
				"count", n, "lease_until", until.UTC().Format(time.RFC3339))
		}
	}
	switch {
	case passErr != nil:
		return total, passErr
	case err != nil:
		return total, err
	}
	return total, ctx.Err()
}

// process decides about a claimed batch: what ends without SMTP is
// recorded, what waits is delayed, and the rest is rendered and returned,
// ready for the connections. inflight gives the times of this pass's
// earlier sends to a contact that the claim may not have seen.
func (s *Sender) process(ctx context.Context, j *sendJourney, batch []Due, now time.Time, inflight func(contact int64) []time.Time) (Stats, []*item, error) {
	var st Stats
	defs := j.defs
	ids := make([]int64, 0, len(batch))
	seen := map[int64]bool{}
	names := map[string]bool{}
	for i := range batch {
		if !seen[batch[i].ContactID] {
			seen[batch[i].ContactID] = true
			ids = append(ids, batch[i].ContactID)
		}
		names[batch[i].Template] = true
	}
	// A contact whose facts cannot be loaded (its data fails the query)
	// must not hold up the batch: the others are loaded without it, and
	// its sends wait (parked, below).
	parked := map[int64]string{}
	var facts []lifecycle.ContactFacts
	// Facts for holds and tone rules, one query for the batch.
	err := lifecycle.Isolate(ctx, ids, func(part []int64) error {
		fs, err := s.store.LoadFacts(ctx, lifecycle.FactsQuery{IDs: part, AsOf: now, Needs: j.needs})
		if facts == nil {
			facts = fs // the usual case: the whole batch at once
		} else {
			facts = append(facts, fs...)
		}
		return err
	}, func(id int64, err error) { parked[id] = "parked: its facts could not be loaded: " + err.Error() })
	if err != nil {
		return st, nil, err
	}
	for id, why := range parked {
		s.log.Warn("a contact's sends wait: its facts could not be loaded; the batch's others go on", "contact", id, "reason", why)
	}
	byContact := make(map[int64]*lifecycle.ContactFacts, len(facts))
	for i := range facts {
		byContact[facts[i].ID] = &facts[i]
	}
	tmplNames := make([]string, 0, len(names))
	for n := range names {
		tmplNames = append(tmplNames, n)
	}
	stored, err := s.store.Templates(ctx, tmplNames)
	if err != nil {
		return st, nil, err
	}
	stepValues, stepParked, err := s.stepValues(ctx, batch, now)
	if err != nil {
		return st, nil, err
	}

	var (
		finals []Final
		delays []Delay
		items  []*item
		sentTo = map[int64][]time.Time{} // this batch's sends, for the cap
	)
	for i := range batch {
		d := &batch[i]
		f := byContact[d.ContactID]
		fin := func(status, detail string) {
			fl := Final{Due: d, Status: status, Detail: detail, At: now}
			s.chain(ctx, &fl, status)
			finals = append(finals, fl)
		}
		// wait holds the send back (a hold, or a decision that cannot be
		// made now) until it expires.
		wait := func(reason string) {
			if exp := defs.Settings.HoldExpiry; exp > 0 && now.Sub(d.HeldSince) > exp {
				fin("expired", fmt.Sprintf("%s, for longer than %s", reason, exp))
				st.Expired++
				return
			}
			delays = append(delays, Delay{Due: d, Until: now.Add(10 * time.Minute), Reason: reason, Held: true})
			st.Delayed++
		}
		if d.Sequence != "" && slices.Contains(defs.Paused, d.Sequence) {
			// Until resumed, without expiring (Pause has usually moved
			// them already; this catches a send queued meanwhile).
			delays = append(delays, Delay{Due: d, Until: PausedUntil, Reason: PausedReason})
			st.Delayed++
			continue
		}
		if d.Broadcast != "" {
			if delay, cancel := broadcastGate(d); cancel != "" {
				fin("cancelled", cancel)
				st.Cancelled++
				continue
			} else if delay != nil {
				delays = append(delays, *delay)
				st.Delayed++
				continue
			}
		}
		if why, ok := parked[d.ContactID]; ok {
			wait(why)
			continue
		}
		if why, ok := stepParked[d.EnrolmentID]; ok && d.EnrolmentID != 0 {
			wait(why)
			continue
		}
		switch {
		case f == nil:
			fin("cancelled", "the contact no longer exists")
			st.Cancelled++
			continue
		case d.EnrolmentID != 0 && !d.EnrolmentActive:
			fin("cancelled", "the enrolment has ended")
			st.Cancelled++
			continue
		case d.Email == "":
			fin("suppressed", "the contact has no email address")
			st.Suppressed++
			continue
		case d.Suppressed != "":
			fin("suppressed", "suppressed: "+d.Suppressed)
			st.Suppressed++
			continue
		case !d.Subscribed:
			fin("suppressed", "suppressed: unsubscribed")
			st.Suppressed++
			continue
		case d.DuplicateOf != 0:
			fin("skipped", fmt.Sprintf("one address, one email: %s gets this email as contact %d", d.Email, d.DuplicateOf))
			st.Skipped++
			continue
		}
		// A send no sender got to in time (Waymark was stopped, a backtest
		// over old history) expires rather than going out late. Sends
		// delayed by a policy (a hold, quiet hours, a cap, a retry) are
		// due again at their new time: only lateness counts.
		if late := defs.Settings.LateExpiry; late > 0 && now.Sub(d.DueAt) > late {
			fin("expired", fmt.Sprintf("due at %s, %s late: past sending: late_expiry (%s)", d.DueAt.UTC().Format(time.RFC3339), now.Sub(d.DueAt).Round(time.Minute), late))
			st.Expired++
			continue
		}
		// Holds: no marketing email while one holds. Held sends wait.
		if name, err := holding(defs.Holds, j.holds, &f.Facts); name != "" {
			if err != nil {
				// A hold that cannot be evaluated on this contact's data
				// holds: no promotion goes out that a hold might forbid.
				wait(fmt.Sprintf("held: %s could not be evaluated: %v", name, err))
			} else {
				wait("held: " + name)
			}
			continue
		}
		// The step's own condition.
		var step *Step
		if d.EnrolmentID != 0 {
			c, err := s.runner.Version(ctx, d.Sequence, d.EnrolmentVersion)
			if err != nil {
				return st, nil, err
			}
			if d.Step >= len(c.Sequence.Steps) {
				fin("cancelled", "the step is no longer in the sequence")
				st.Cancelled++
				continue
			}
			step = &c.Sequence.Steps[d.Step]
			// The sequence's goal and exit, as of now: an order the
			// runner has not evaluated yet (the reactor is a moment
			// behind, or a sweep away) still stops the cart reminder.
			e := Enrolment{ID: d.EnrolmentID, ContactID: d.ContactID, Sequence: d.Sequence, Version: d.EnrolmentVersion}
			if end := reached(c, e, f.Facts, stepValues[d.EnrolmentID], now); end != nil {
				finals = append(finals, Final{Due: d, Status: "cancelled", Detail: end.Status + ": " + end.Reason, At: now, End: end})
				st.Cancelled++
				continue
			}
			if p := c.Steps[d.Step]; p != nil {
				facts := f.Facts
				facts.Values = stepValues[d.EnrolmentID]
				ok, err := p.Eval(&facts)
				if err != nil || !ok {
					reason := "the step's condition is false: " + step.When
					if err != nil {
						reason = "the step's condition could not be evaluated: " + err.Error()
					}
					fin("skipped", reason)
					st.Skipped++
					continue
				}
			}
		}
		// A step that gives an offer's coupon: the code is stored on the
		// send first, so every attempt shows the same one.
		if step != nil && step.Offer != "" && d.OfferCode == "" {
			o, ok := offerNamed(defs.Offers, step.Offer)
			if !ok {
				fin("failed", fmt.Sprintf("offer %q no longer exists", step.Offer))
				st.Failed++
				continue
			}
			code, expires, err := s.store.GiveStepOffer(ctx, d, o, now)
			if err != nil {
				return st, nil, err
			}
			if code == "" {
				fin("skipped", fmt.Sprintf("offer %q: its coupon pool is empty", o.Name))
				st.Skipped++
				continue
			}
			d.Offer, d.OfferCode, d.OfferExpires = o.Name, code, expires
		}
		// Frequency cap and quiet hours delay, never drop.
		window := append(append(append([]time.Time(nil), d.SentInWindow...), sentTo[d.ContactID]...), inflight(d.ContactID)...)
		if until, ok := capped(defs.Settings, window, now); ok {
			delays = append(delays, Delay{Due: d, Until: until, Reason: fmt.Sprintf("frequency cap: %d emails in %s", defs.Settings.CapMax, defs.Settings.CapPer)})
			st.Delayed++
			continue
		}
		if until, ok := quiet(defs.Settings, f.Traits, now, &s.zones); ok {
			delays = append(delays, Delay{Due: d, Until: until, Reason: "quiet hours in the contact's time zone"})
			st.Delayed++
			continue
		}
		// Render in the tone chosen for this contact and situation.
		tpl, ok := stored[d.Template]
		if !ok {
			fin("failed", fmt.Sprintf("template %q no longer exists", d.Template))
			st.Failed++
			continue
		}
		if d.Subject != "" {
			tpl = tpl.WithSubject(d.Subject) // an A/B test's subject line
		}
		compiled, err := s.compiledTemplate(tpl)
		if err != nil {
			fin("failed", err.Error())
			st.Failed++
			continue
		}
		choice := templates.ChooseTone(j.tones, &f.Facts)
		if step != nil && step.Tone != "" {
			choice = templates.Pinned(step.Tone)
		}
		data := &templates.Data{Contact: contactData(d.Email, &f.Facts)}
		if d.OfferCode != "" {
			data.Offer = &templates.Offer{Name: d.Offer, Code: d.OfferCode, ExpiresAt: d.OfferExpires}
		}
		if s.cfg.Links != nil {
			data.UnsubscribeURL, data.PreferencesURL = s.cfg.Links(d)
		}
		r, err := compiled.Render(choice.Tone, data)
		if err != nil {
			fin("failed", "rendering: "+err.Error())
			st.Failed++
			continue
		}
		msg := &mailer.Message{ID: s.messageID(d), From: s.cfg.From, To: d.Email, Subject: r.Subject, Text: r.Text, HTML: r.HTML, Date: now}
		if s.cfg.ReturnPath != nil {
			msg.ReturnPath = s.cfg.ReturnPath(d.ContactID, d.ID)
		}
		if s.cfg.Decorate != nil {
			s.cfg.Decorate(msg, d, defs.Settings.Tracking, data.UnsubscribeURL, data.PreferencesURL)
		}
		sentTo[d.ContactID] = append(sentTo[d.ContactID], now)
		items = append(items, &item{due: d, msg: msg, final: Final{Due: d, Recipient: d.Email, MessageID: msg.ID, Tone: choice.Tone, ToneReason: choice.Reason, TemplateVersion: tpl.Version, At: now}})
	}
	if err := s.store.Delay(ctx, delays); err != nil {
		return st, nil, err
	}
	if err := s.store.Finish(ctx, finals); err != nil {
		return st, nil, err
	}
	return st, items, nil
}

// pace waits for the next slot allowed by the rate limit.
func (s *Sender) pace(ctx context.Context) error {
	if s.cfg.Rate <= 0 {
		return nil
	}
	interval := time.Duration(float64(time.Second) / s.cfg.Rate)
	s.rateMu.Lock()
	now := time.Now()
	if s.nextSlot.Before(now) {
		s.nextSlot = now
	}
	slot := s.nextSlot
	s.nextSlot = s.nextSlot.Add(interval)
	s.rateMu.Unlock()
	if wait := time.Until(slot); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// outcome turns an SMTP result into the send's final state, or a retry.
func (s *Sender) outcome(it *item, res mailer.Result) (Final, *Delay) {
	fl := it.final
	fl.At = s.now()
	fl.Detail = res.String()
	switch res.Outcome {
	case mailer.Sent:
		fl.Status = "sent"
	case mailer.Unknown:
		fl.Status = "unknown"
	case mailer.TempFail:
		if it.due.Attempts+1 < s.cfg.MaxAttempts {
			return fl, &Delay{Due: it.due, Until: fl.At.Add(backoff(it.due.Attempts)), Reason: "temporary failure, retrying: " + res.String(), Retry: true}
		}
		fl.Status = "failed"
		fl.Detail = fmt.Sprintf("gave up after %d attempts: %s", it.due.Attempts+1, res.String())
	default:
		fl.Status = "failed"
		if res.HardBounce() {
			fl.Suppress = it.due.Email
		}
	}
	s.chain(context.Background(), &fl, fl.Status)
	return fl, nil
}

// chain decides what follows a send's end in its enrolment: the next step,
// or the end of the enrolment.
func (s *Sender) chain(ctx context.Context, fl *Final, status string) {
	d := fl.Due
	if d.EnrolmentID == 0 {
		return
	}
	e := Enrolment{ID: d.EnrolmentID, ContactID: d.ContactID, Sequence: d.Sequence, Version: d.EnrolmentVersion}
	switch status {
	case "cancelled":
		return
	case "suppressed":
		fl.End = &Ending{Enrolment: e, Status: "exited", Reason: fl.Detail, At: fl.At}
		return
	}
	c, err := s.runner.Version(ctx, d.Sequence, d.EnrolmentVersion)
	if err != nil || d.Step+1 >= len(c.Sequence.Steps) {
		fl.End = &Ending{Enrolment: e, Status: "completed", Reason: "all steps done", At: fl.At}
		return
	}
	next := c.Sequence.Steps[d.Step+1]
	fl.Next = &NextStep{Step: d.Step + 1, Template: next.Template, DueAt: fl.At.Add(next.After)}
}

// reached returns the ending of enrolment e if its sequence's goal is
// reached (converted) or its exit holds (exited) as of now, given the
// contact's facts and the enrolment's values; nil if neither. The runner
// checks it as events arrive, the sender once more before each step.
func reached(c *Compiled, e Enrolment, f rule.Facts, values map[rule.Aggregate]float64, now time.Time) *Ending {
	f.Values = values
	// What the condition saw is described only when it holds: this runs
	// for every sequence send, and mostly it does not.
	if c.Goal != nil {
		if ok, err := c.Goal.Eval(&f); err == nil && ok {
			return &Ending{Enrolment: e, Status: "converted", Reason: "goal reached: " + rule.Describe(c.Goal.Observe(&f)), At: now}
		}
	}
	if c.Exit != nil {
		if ok, err := c.Exit.Eval(&f); err == nil && ok {
			return &Ending{Enrolment: e, Status: "exited", Reason: "exit: " + c.Sequence.Exit + " (" + rule.Describe(c.Exit.Observe(&f)) + ")", At: now}
		}
	}
	return nil
}

// stepValues loads the aggregates of the batch's step conditions and its
// sequences' goals and exits, by enrolment; an enrolment whose values cannot be loaded (its contact's data
// fails the query) is left out and returned with the reason, so that the
// others go on.
func (s *Sender) stepValues(ctx context.Context, batch []Due, now time.Time) (map[int64]map[rule.Aggregate]float64, map[int64]string, error) {
	var (
		es    []Enrolment
		progs []*rule.Program
	)
	for i := range batch {
		d := &batch[i]
		if d.EnrolmentID == 0 || !d.EnrolmentActive {
			continue
		}
		c, err := s.runner.Version(ctx, d.Sequence, d.EnrolmentVersion)
		if err != nil {
			return nil, nil, err
		}
		n := len(progs)
		if d.Step < len(c.Steps) && c.Steps[d.Step] != nil {
			progs = append(progs, c.Steps[d.Step])
		}
		if c.Goal != nil {
			progs = append(progs, c.Goal)
		}
		if c.Exit != nil {
			progs = append(progs, c.Exit)
		}
		if len(progs) > n {
			es = append(es, Enrolment{ID: d.EnrolmentID, ContactID: d.ContactID, EnrolledAt: d.EnrolledAt})
		}
	}
	if len(es) == 0 {
		return nil, nil, nil
	}
	needs := rule.Needs(progs...)
	out := map[int64]map[rule.Aggregate]float64{}
	parked := map[int64]string{}
	err := lifecycle.Isolate(ctx, es, func(part []Enrolment) error {
		vs, err := s.store.EnrolmentValues(ctx, part, needs, now)
		for id, v := range vs {
			out[id] = v
		}
		return err
	}, func(e Enrolment, err error) {
		parked[e.ID] = "parked: the step's condition could not be loaded: " + err.Error()
	})
	return out, parked, err
}

// sendJourney is what the sender decides by at one journey version: the
// campaigns as stored, their holds and the tone rules compiled, and the
// aggregates those read.
type sendJourney struct {
	version string
	defs    Definitions
	holds   []*rule.Program // parallel to defs.Holds
	tones   []templates.ToneRule
	needs   []rule.Aggregate
}

// journeyNow returns what the sender decides by, loaded and compiled again
// only when the stored journey changed.
func (s *Sender) journeyNow(ctx context.Context) (*sendJourney, error) {
	version, err := s.store.JourneyVersion(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	j := s.journey
	s.mu.Unlock()
	if j != nil && j.version == version && version != "" {
		return j, nil
	}
	defs, err := s.store.Definitions(ctx)
	if err != nil {
		return nil, err
	}
	j = &sendJourney{version: version, defs: defs, holds: make([]*rule.Program, 0, len(defs.Holds))}
	for _, h := range defs.Holds {
		p, err := rule.Compile(h.When, rule.CompileOptions{})
		if err != nil {
			return nil, fmt.Errorf("hold %q: %w", h.Name, err)
		}
		j.holds = append(j.holds, p)
	}
	tones, err := s.store.ToneRules(ctx)
	if err != nil {
		return nil, err
	}
	if j.tones, err = templates.CompileTones(tones); err != nil {
		return nil, err
	}
	j.needs = rule.Needs(append(slices.Clone(j.holds), templates.ToneConditions(j.tones)...)...)
	s.mu.Lock()
	s.journey = j
	s.mu.Unlock()
	return j, nil
}

func (s *Sender) compiledTemplate(t StoredTemplate) (*templates.Compiled, error) {
	k := fmt.Sprintf("%s@%d\x00%s", t.Template.Name, t.Version, t.Subject)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.compiled[k]; ok {
		return c, nil
	}
	c, err := templates.Compile(t.Template)
	if err != nil {
		return nil, err
	}
	s.compiled[k] = c
	return c, nil
}

// offerNamed is the journey's offer called name.
func offerNamed(offers []Offer, name string) (Offer, bool) {
	for _, o := range offers {
		if o.Name == name {
			return o, true
		}
	}
	return Offer{}, false
}
