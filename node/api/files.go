package api

import (
	"bytes"
	"context"
	"mime"
	"net/http"
	"time"

	"github.com/sealpost/sealpost/node/files"
)

// Files is what the file routes serve; *files.Service (the node's,
// node.Node.Files) implements it. The methods and their errors are
// documented in package node/files; the sentinels table maps the errors
// to codes.
type Files interface {
	Send(ctx context.Context, req files.SendRequest) (files.Info, error)
	SendGroup(ctx context.Context, req files.GroupSendRequest) (files.Info, error)
	Get(ctx context.Context, id string) (files.Info, error)
	List(ctx context.Context, limit int) ([]files.Info, error)
	Download(ctx context.Context, id string) (files.Info, error)
	Open(ctx context.Context, id string) (*files.Content, error)
	Thumbnail(ctx context.Context, id string) ([]byte, error)
}

var _ Files = (*files.Service)(nil)

// FileList is the body of GET /v1/files.
type FileList struct {
	// Files are the newest first.
	Files []files.Info `json:"files"`
}

// errNoFiles answers the file routes of a server without a file service.
var errNoFiles = Errorf(CodeUnavailable, "attachments are not running on this node")

// inlineTypes are the media types GET /v1/files/{id}/content?inline=1
// serves as themselves (for the web app to show); every other file is
// served as application/octet-stream, for download only: a file's type is
// its sender's claim, and the API's origin must never run what a contact
// sent (HTML, SVG, scripts).
var inlineTypes = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"audio/mpeg": true, "audio/ogg": true, "audio/mp4": true, "video/mp4": true, "video/webm": true,
}

func (s *Server) fileRoutes() []route {
	f := s.cfg.Files
	with := func(fn func(r *http.Request) (any, error)) http.Handler {
		return s.handle(func(r *http.Request) (any, error) {
			if f == nil {
				return nil, errNoFiles
			}
			return fn(r)
		})
	}
	return []route{
		{"POST /v1/files", false, with(s.sendFile)},
		{"POST /v1/groups/{group}/files", false, with(s.sendGroupFile)},
		{"GET /v1/files", false, with(func(r *http.Request) (any, error) {
			limit, err := queryInt(r, "limit", 0)
			if err != nil {
				return nil, err
			}
			list, err := f.List(r.Context(), int(limit))
			if list == nil {
				list = []files.Info{}
			}
			return FileList{Files: list}, err
		})},
		{"GET /v1/files/{id}", false, with(func(r *http.Request) (any, error) {
			return f.Get(r.Context(), r.PathValue("id"))
		})},
		{"POST /v1/files/{id}/download", false, with(func(r *http.Request) (any, error) {
			return f.Download(r.Context(), r.PathValue("id"))
		})},
		{"GET /v1/files/{id}/content", false, http.HandlerFunc(s.fileContent)},
		{"GET /v1/files/{id}/thumbnail", false, http.HandlerFunc(s.fileThumbnail)},
	}
}

// sendFile answers POST /v1/files?to=CONTACT&name=NAME&mime=TYPE&caption=TEXT:
// the body is the file's content, its length in Content-Length.
func (s *Server) sendFile(r *http.Request) (any, error) {
	q := r.URL.Query()
	to := q.Get("to")
	if to == "" {
		return nil, Errorf(CodeBadRequest, "to (the contact's name or user ID) is required")
	}
	if r.ContentLength < 0 {
		return nil, Errorf(CodeBadRequest, "the file's size is required: send the content with a Content-Length")
	}
	return s.cfg.Files.Send(r.Context(), files.SendRequest{
		To:      to,
		Body:    r.Body,
		Size:    r.ContentLength,
		Meta:    files.FileMeta{Name: q.Get("name"), MIME: q.Get("mime")},
		Caption: q.Get("caption"),
	})
}

// sendGroupFile answers POST
// /v1/groups/{group}/files?name=NAME&mime=TYPE&caption=TEXT: the body is
// the file's content, its length in Content-Length; the file goes to
// every member of the group.
func (s *Server) sendGroupFile(r *http.Request) (any, error) {
	q := r.URL.Query()
	if r.ContentLength < 0 {
		return nil, Errorf(CodeBadRequest, "the file's size is required: send the content with a Content-Length")
	}
	return s.cfg.Files.SendGroup(r.Context(), files.GroupSendRequest{
		Group:   r.PathValue("group"),
		Body:    r.Body,
		Size:    r.ContentLength,
		Meta:    files.FileMeta{Name: q.Get("name"), MIME: q.Get("mime")},
		Caption: q.Get("caption"),
	})
}

// fileContent answers GET /v1/files/{id}/content: the content of a saved
// incoming file or of an outgoing one, with Range requests, as an
// attachment named by the file's name (inline=1: as itself, for the media
// types of inlineTypes).
func (s *Server) fileContent(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Files == nil {
		s.writeError(w, errNoFiles)
		return
	}
	c, err := s.cfg.Files.Open(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	defer c.Close()
	typ, disp := "application/octet-stream", "attachment"
	if r.URL.Query().Get("inline") == "1" && inlineTypes[c.Info.MIME] {
		typ, disp = c.Info.MIME, "inline"
	}
	h := untrustedHeaders(w, typ)
	name := c.Info.Name
	if name == "" {
		name = "file-" + c.Info.ID[:8]
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	http.ServeContent(w, r, "", c.Info.CreatedAt, c)
}

// fileThumbnail answers GET /v1/files/{id}/thumbnail: the preview image
// the file's pointer carries (JPEG or PNG by its first bytes; anything
// else is not served).
func (s *Server) fileThumbnail(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Files == nil {
		s.writeError(w, errNoFiles)
		return
	}
	b, err := s.cfg.Files.Thumbnail(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	var typ string
	switch {
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		typ = "image/jpeg"
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		typ = "image/png"
	default:
		s.writeError(w, Errorf(CodeNotFound, "file %s has no thumbnail", r.PathValue("id")))
		return
	}
	untrustedHeaders(w, typ)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// untrustedHeaders sets the headers of an answer whose bytes a contact
// sent: its type, no caching, and a sandbox on whatever a browser makes of
// it, besides nosniff.
func untrustedHeaders(w http.ResponseWriter, typ string) http.Header {
	h := w.Header()
	h.Set("Content-Type", typ)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	return h
}
