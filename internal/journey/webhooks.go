package journey

import (
	"net/url"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/waymark/waymark/internal/suggest"
	"github.com/waymark/waymark/internal/webhook"
)

// envName is an environment variable's name as a shell writes it.
var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// webhooks reads `webhooks:`: each a name, an http(s) URL, the events it
// wants (of webhook.Events) and the environment variable that holds its
// secret (the file never holds the secret itself).
func (p *parser) webhooks(n *yaml.Node, j *Journey) {
	p.namedList(n, "webhooks", func(wn *yaml.Node, what string) {
		var e webhook.Endpoint
		p.mapping(wn, what, map[string]func(*yaml.Node){
			"name": func(v *yaml.Node) { e.Name = strings.TrimSpace(p.str(v, "name")) },
			"url": func(v *yaml.Node) {
				raw := strings.TrimSpace(p.str(v, what+": url"))
				u, err := url.Parse(raw)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					p.errorf(v, "%s: url must be an http or https address like https://crm.example.com/hooks/waymark", what)
					return
				}
				e.URL = raw
			},
			"events": func(v *yaml.Node) {
				if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
					p.errorf(v, "%s: events must be a list of one or more of %s", what, strings.Join(webhook.Events, ", "))
					return
				}
				for _, x := range v.Content {
					name := strings.TrimSpace(p.str(x, what+": events"))
					if !slices.Contains(webhook.Events, name) {
						msg := "unknown event " + `"` + name + `"` + " (known: " + strings.Join(webhook.Events, ", ") + ")"
						if s := suggest.Closest(name, webhook.Events); s != "" {
							msg += `; did you mean "` + s + `"?`
						}
						p.errorf(x, "%s: %s", what, msg)
						continue
					}
					if !slices.Contains(e.Events, name) {
						e.Events = append(e.Events, name)
					}
				}
			},
			"secret_env": func(v *yaml.Node) {
				name := strings.TrimSpace(p.str(v, what+": secret_env"))
				if !envName.MatchString(name) {
					p.errorf(v, "%s: secret_env must name an environment variable (like WAYMARK_WEBHOOK_CRM_SECRET) that holds the secret, whsec_ and base64; the secret itself never goes in the journey file", what)
					return
				}
				e.SecretEnv = name
			},
		}, nil)
		if wn.Kind == yaml.MappingNode {
			for _, key := range []string{"url", "events", "secret_env"} {
				if valueOf(wn, key) == nil {
					p.errorf(wn, "%s: missing %s", what, key)
				}
			}
		}
		j.Webhooks = append(j.Webhooks, e)
	})
}
