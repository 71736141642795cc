package bounce

import (
	"encoding/json"
	"fmt"
	"time"
)

// postmarkRecord is a Postmark webhook's JSON: a Bounce, a SpamComplaint
// (both bounce records) or a Delivery.
type postmarkRecord struct {
	RecordType  string      `json:"RecordType"`
	ID          json.Number `json:"ID"`
	Type        string      `json:"Type"`
	MessageID   string      `json:"MessageID"`
	Description string      `json:"Description"`
	Details     string      `json:"Details"`
	Email       string      `json:"Email"`
	Recipient   string      `json:"Recipient"`
	BouncedAt   time.Time   `json:"BouncedAt"`
	DeliveredAt time.Time   `json:"DeliveredAt"`
	Content     string      `json:"Content"`
}

// Postmark's bounce types (its Bounce API's "Type"), sorted by what they
// mean here. Types not listed (auto-responders, subscribe and unsubscribe
// requests, address changes, challenge verifications...) are not
// delivery failures and are not recorded.
var (
	postmarkHard = map[string]bool{"HardBounce": true, "BadEmailAddress": true, "ManuallyDeactivated": true}
	postmarkSoft = map[string]bool{"SoftBounce": true, "Transient": true, "DnsError": true, "SpamNotification": true,
		"VirusNotification": true, "Blocked": true, "Unknown": true, "SMTPApiError": true, "DMARCPolicy": true}
)

// ParsePostmark reads one Postmark webhook call (one record). A record of
// a kind that is not a bounce, complaint or delivery gives no report.
func ParsePostmark(body []byte) ([]Report, error) {
	var p postmarkRecord
	dec := json.NewDecoder(bytesReader(body))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("not a Postmark webhook record: %v", err)
	}
	r := Report{Provider: "postmark", MessageIDs: append([]string{p.MessageID}, MessageIDsIn(p.Content)...)}
	email := p.Email
	switch {
	case p.RecordType == "SpamComplaint" || p.RecordType == "Bounce" && p.Type == "SpamComplaint":
		r.Kind, r.ID, r.At = Complained, "bounce/"+p.ID.String(), p.BouncedAt
		r.Detail = detail(p.Details)
	case p.RecordType == "Bounce" || p.RecordType == "" && p.Type != "":
		switch {
		case postmarkHard[p.Type]:
			r.BounceType = Hard
		case postmarkSoft[p.Type]:
			r.BounceType = Soft
		default:
			return nil, nil
		}
		r.Kind, r.ID, r.At = Bounced, "bounce/"+p.ID.String(), p.BouncedAt
		r.Detail = detail(p.Type, p.Description, p.Details)
	case p.RecordType == "Delivery":
		email = p.Recipient
		r.Kind, r.At = Delivered, p.DeliveredAt
		r.ID = "delivery/" + p.MessageID + "/" + p.Recipient
		r.Detail = detail(p.Details)
	default:
		return nil, nil
	}
	if r.Kind != Delivered && p.ID.String() == "" {
		return nil, fmt.Errorf("ID: missing")
	}
	e, err := address(email)
	if err != nil {
		return nil, fmt.Errorf("Email: %v", err)
	}
	r.Email = e
	return []Report{r}, nil
}
