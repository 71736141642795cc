package web

import (
	"context"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/auth"
	"github.com/waymark/waymark/internal/contact"
	"github.com/waymark/waymark/internal/export"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/stats"
	"github.com/waymark/waymark/internal/webhook"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/templates"
)

// What the API and the dashboard read and change, by concern. The
// application passes its PostgreSQL store (internal/store), which has
// them all.

// Store is everything the API and the dashboard use: the concerns below,
// the engine's store (dry runs of rule edits, and the facts a preview
// reads) and what a preview of enrolments reads.
type Store interface {
	Keys
	Contacts
	Suppressions
	Figures
	Journey
	Webhooks
	Broadcasts
	Reports
	lifecycle.Store
	campaigns.PreviewStore
}

// Keys authenticate API requests and dashboard sessions.
type Keys interface {
	// Authenticate returns the key a plain-text key is; auth.ErrBadKey if
	// it is malformed, unknown or revoked.
	Authenticate(ctx context.Context, key string) (auth.APIKey, error)
	CreateSession(ctx context.Context, keyID int64, ttl time.Duration) (token string, sess auth.Session, err error)
	// SessionByToken returns the live session a cookie token names;
	// auth.ErrBadKey if there is none.
	SessionByToken(ctx context.Context, token string) (auth.Session, error)
	EndSession(ctx context.Context, token string) error
}

// Contacts are read, exported and erased; lookups of a contact that does
// not exist return contact.ErrNotFound.
type Contacts interface {
	ContactByID(ctx context.Context, id int64) (contact.Contact, error)
	// Contacts returns a page of contacts and the next page's cursor;
	// contact.ErrBadCursor for a cursor of another listing.
	Contacts(ctx context.Context, q contact.Query) ([]contact.Contact, string, error)
	// ContactRef resolves a numeric id, a userId, an anonymousId or an
	// email address.
	ContactRef(ctx context.Context, ref string) (int64, error)
	ContactTimeline(ctx context.Context, id int64, maxEvents int) (contact.Timeline, error)
	ContactParking(ctx context.Context, id int64) (*contact.Parking, error)
	Export(ctx context.Context, contactID int64) ([]byte, error)
	Erase(ctx context.Context, contactID int64) (string, error)
	// ExportContacts hands the contacts q names to page, a page at a time,
	// from one snapshot.
	ExportContacts(ctx context.Context, q export.Query, page func([]export.Contact) error) error
}

// Suppressions are the addresses never sent to.
type Suppressions interface {
	// Suppressions returns a page of the list and the next page's
	// cursor; contact.ErrBadCursor for a cursor of another listing.
	Suppressions(ctx context.Context, sort, after string, limit int) ([]contact.Suppression, string, error)
	Suppress(ctx context.Context, email, reason, detail string) (int, error)
	Unsuppress(ctx context.Context, email string) (bool, error)
}

// Figures are the dashboard's daily rollups.
type Figures interface {
	RefreshStats(ctx context.Context, now time.Time, full bool) (bool, error)
	// StatsStateNow returns the last refresh's state;
	// stats.ErrNotRefreshed before the first.
	StatsStateNow(ctx context.Context) (stats.State, error)
	Flows(ctx context.Context, p stats.Period) ([]stats.Flow, error)
	EmailDays(ctx context.Context, p stats.Period) ([]stats.EmailDay, error)
	HealthFigures(ctx context.Context, p stats.Period) (stats.StageFigures, error)
	StepStats(ctx context.Context, p stats.Period) ([]stats.StepFigures, error)
	OfferStats(ctx context.Context, p stats.Period) ([]stats.OfferFigures, error)
}

// Reports are what marketing earned (issue 21): the figures of the
// emails sent in a period by a dimension, the offers' holdouts, the A/B
// tests, the stages' economics and the conversions per day, read from
// rollups the store maintains (RefreshReports; the application's
// refresher runs attribution first, Config.RefreshReports).
type Reports interface {
	RefreshReports(ctx context.Context, now time.Time, full bool) error
	Report(ctx context.Context, by report.Dimension, p report.Period) (report.Table, error)
	Holdouts(ctx context.Context, p report.Period) ([]report.Holdout, error)
	ABTests(ctx context.Context, p report.Period) ([]report.ABTest, error)
	Stages(ctx context.Context, p report.Period) ([]report.Stage, error)
	Days(ctx context.Context, p report.Period) ([]report.Day, error)
}

// Journey is the stored journey, as the API lists it and the rule editor
// changes it.
type Journey interface {
	RuleInfos(ctx context.Context) ([]journey.RuleInfo, error)
	SaveRule(ctx context.Context, r journey.Rule) ([]journey.Change, error)
	TemplateList(ctx context.Context) ([]journey.Named, error)
	SequenceList(ctx context.Context) ([]journey.Named, error)
	OfferList(ctx context.Context) ([]journey.Named, error)
	// Template returns a stored template and its version;
	// journey.ErrNotFound if there is none of that name.
	Template(ctx context.Context, name string) (templates.Template, int, error)
	ToneRules(ctx context.Context) ([]templates.ToneRuleSource, error)
	Definitions(ctx context.Context) (campaigns.Definitions, error)
}

// Webhooks are the journey's endpoints with their deliveries.
type Webhooks interface {
	WebhookEndpoints(ctx context.Context) ([]webhook.EndpointStatus, error)
	// WebhookDeliveries is an endpoint's log, newest first, before the
	// delivery id before (0: from the newest), limit at a time.
	WebhookDeliveries(ctx context.Context, endpoint string, before int64, limit int) ([]webhook.LogEntry, error)
	// QueueWebhookTest queues a test event to the endpoint;
	// webhook.ErrNoEndpoint if the journey has none of that name.
	QueueWebhookTest(ctx context.Context, endpoint string, at time.Time) (int64, error)
}

// Broadcasts and segments are listed, made, steered and previewed (what
// running one reads and writes comes with them: the dry run resolves an
// audience as a run does).
type Broadcasts interface {
	campaigns.BroadcastStore
	campaigns.Previewer
	Segments(ctx context.Context) ([]campaigns.Segment, error)
	// SegmentSummaries lists the segments with their sizes now and a day
	// (up to days of them).
	SegmentSummaries(ctx context.Context, days int) ([]campaigns.SegmentSummary, error)
	// SegmentMembers is a page of a segment's members after the contact
	// id after, and the next page's cursor (0: none);
	// campaigns.ErrNoSegment if there is no such segment.
	SegmentMembers(ctx context.Context, segment string, after int64, limit int) ([]campaigns.SegmentMember, int64, error)
	Broadcasts(ctx context.Context) ([]campaigns.StoredBroadcast, error)
	// Broadcast returns one; campaigns.ErrNoBroadcast if there is none.
	Broadcast(ctx context.Context, name string) (campaigns.StoredBroadcast, error)
	BroadcastProgress(ctx context.Context, name string) ([]campaigns.RunProgress, error)
	// SaveBroadcast creates (create) or edits a broadcast;
	// campaigns.ErrBroadcastExists, campaigns.ErrNoBroadcast, or
	// campaigns.ErrBroadcastState (a cancelled one).
	SaveBroadcast(ctx context.Context, b campaigns.Broadcast, create bool, now time.Time) (campaigns.StoredBroadcast, error)
	PauseBroadcast(ctx context.Context, name string) (int, error)
	// ResumeBroadcast: campaigns.ErrBroadcastState when it is not paused.
	ResumeBroadcast(ctx context.Context, name string, now time.Time) (int, error)
	CancelBroadcast(ctx context.Context, name, reason string) (int, error)
}
