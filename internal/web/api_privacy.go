package web

import (
	"net/http"
)

// The privacy endpoints: what `waymark contacts export` and `erase` do,
// over the API. Erasing needs a key that may write.

// apiExport answers everything stored about a contact, as JSON.
func (s *Server) apiExport(w http.ResponseWriter, r *http.Request) {
	c, ok := s.contactParam(w, r)
	if !ok {
		return
	}
	b, err := s.st.Export(r.Context(), c.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// apiErase removes the contact's personal data and activity, keeping only
// a hashed suppression of its address.
func (s *Server) apiErase(w http.ResponseWriter, r *http.Request) {
	c, ok := s.contactParam(w, r)
	if !ok {
		return
	}
	email, err := s.st.Erase(r.Context(), c.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Erased     int64 `json:"erased"`
		Suppressed bool  `json:"address_suppressed"`
	}{c.ID, email != ""})
}
