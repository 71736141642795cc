package bounce

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// sesNotification is Amazon SES's bounce, complaint or delivery
// notification, the Message of an SNS notification (notificationType), or
// an event-publishing record (eventType).
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Mail             struct {
		MessageID string `json:"messageId"`
		Headers   []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
		CommonHeaders struct {
			MessageID string `json:"messageId"`
		} `json:"commonHeaders"`
	} `json:"mail"`
	Bounce *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
		Timestamp  time.Time `json:"timestamp"`
		FeedbackID string    `json:"feedbackId"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
		ComplaintFeedbackType string    `json:"complaintFeedbackType"`
		Timestamp             time.Time `json:"timestamp"`
		FeedbackID            string    `json:"feedbackId"`
	} `json:"complaint"`
	Delivery *struct {
		Recipients   []string  `json:"recipients"`
		SMTPResponse string    `json:"smtpResponse"`
		Timestamp    time.Time `json:"timestamp"`
	} `json:"delivery"`
}

// ParseSES reads an SES notification (an SNS notification's Message) into
// one report per recipient. A notification of another type (Send, Open,
// DeliveryDelay...) gives none. A report's ID is SES's feedback id (the
// message's id for a delivery) and the recipient; snsID, the SNS
// message's id, stands in when SES gives none.
func ParseSES(message, snsID string) ([]Report, error) {
	var n sesNotification
	if err := json.Unmarshal([]byte(message), &n); err != nil {
		return nil, fmt.Errorf("Message is not an SES notification: %v", err)
	}
	typ := n.NotificationType
	if typ == "" {
		typ = n.EventType
	}
	ids := []string{n.Mail.CommonHeaders.MessageID}
	for _, h := range n.Mail.Headers {
		if strings.EqualFold(h.Name, "Message-ID") {
			ids = append(ids, h.Value)
		}
	}
	var out []Report
	add := func(r Report, email string) error {
		e, err := address(email)
		if err != nil {
			return fmt.Errorf("recipient: %v", err)
		}
		r.Provider, r.Email, r.MessageIDs = "ses", e, ids
		if strings.HasSuffix(r.ID, "/") {
			r.ID += "sns:" + snsID
		}
		r.ID += "/" + e
		out = append(out, r)
		return nil
	}
	switch typ {
	case "Bounce":
		b := n.Bounce
		if b == nil {
			return nil, fmt.Errorf("a Bounce notification without a bounce object")
		}
		bt := Soft
		if b.BounceType == "Permanent" {
			bt = Hard
		}
		for _, rcpt := range b.BouncedRecipients {
			r := Report{ID: "bounce/" + b.FeedbackID, Kind: Bounced, BounceType: bt, At: b.Timestamp,
				Detail: detail(b.BounceType+"/"+b.BounceSubType, rcpt.Status, rcpt.DiagnosticCode)}
			if err := add(r, rcpt.EmailAddress); err != nil {
				return nil, err
			}
		}
	case "Complaint":
		c := n.Complaint
		if c == nil {
			return nil, fmt.Errorf("a Complaint notification without a complaint object")
		}
		for _, rcpt := range c.ComplainedRecipients {
			r := Report{ID: "complaint/" + c.FeedbackID, Kind: Complained, At: c.Timestamp, Detail: detail(c.ComplaintFeedbackType)}
			if err := add(r, rcpt.EmailAddress); err != nil {
				return nil, err
			}
		}
	case "Delivery":
		d := n.Delivery
		if d == nil {
			return nil, fmt.Errorf("a Delivery notification without a delivery object")
		}
		for _, rcpt := range d.Recipients {
			r := Report{ID: "delivery/" + n.Mail.MessageID, Kind: Delivered, At: d.Timestamp, Detail: detail(d.SMTPResponse)}
			if err := add(r, rcpt); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
