package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/sealpost/sealpost/node/files"
)

// filePath is the path of file id's routes.
func filePath(id, rest string) string { return "/v1/files/" + url.PathEscape(id) + rest }

// SendFile calls POST /v1/files: send size bytes of body to the contact
// to, as a file named name (the base name only; empty: none) of media type
// mime (empty: guessed from the name), with caption. It returns when the
// daemon has encrypted the file and recorded it (state queued); the
// transfer goes on in the daemon. body is read as it is sent: wrap it to
// show progress.
func (c *Client) SendFile(ctx context.Context, to, name, mime, caption string, body io.Reader, size int64) (files.Info, error) {
	q := url.Values{}
	q.Set("to", to)
	return c.postFile(ctx, "/v1/files", q, name, mime, caption, body, size)
}

// SendGroupFile calls POST /v1/groups/{group}/files: send size bytes of
// body to every member of group, as SendFile does to a contact.
func (c *Client) SendGroupFile(ctx context.Context, group, name, mime, caption string, body io.Reader, size int64) (files.Info, error) {
	return c.postFile(ctx, groupPath(group)+"/files", url.Values{}, name, mime, caption, body, size)
}

// postFile posts a file's content to path with the query q and the file's
// name, media type and caption.
func (c *Client) postFile(ctx context.Context, path string, q url.Values, name, mime, caption string, body io.Reader, size int64) (files.Info, error) {
	if name != "" {
		q.Set("name", name)
	}
	if mime != "" {
		q.Set("mime", mime)
	}
	if caption != "" {
		q.Set("caption", caption)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path+"?"+q.Encode(), io.NopCloser(body))
	if err != nil {
		return files.Info{}, fmt.Errorf("api: %w", err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(ctx, req)
	if err != nil {
		return files.Info{}, err
	}
	defer resp.Body.Close()
	var info files.Info
	if err := decodeJSON(resp, &info); err != nil {
		return info, fmt.Errorf("api: decode POST %s: %w", path, err)
	}
	return info, nil
}

// Files calls GET /v1/files: the files sent and received, newest first, at
// most limit (0: all).
func (c *Client) Files(ctx context.Context, limit int) ([]files.Info, error) {
	path := "/v1/files"
	if limit > 0 {
		path += fmt.Sprintf("?limit=%d", limit)
	}
	var list FileList
	err := c.do(ctx, http.MethodGet, path, nil, &list)
	return list.Files, err
}

// File calls GET /v1/files/{id}: the file carried by message id.
func (c *Client) File(ctx context.Context, id string) (files.Info, error) {
	var info files.Info
	err := c.do(ctx, http.MethodGet, filePath(id, ""), nil, &info)
	return info, err
}

// DownloadFile calls POST /v1/files/{id}/download: download an incoming
// file that waits to be asked for (over the automatic size, from a
// message request, or failed).
func (c *Client) DownloadFile(ctx context.Context, id string) (files.Info, error) {
	var info files.Info
	err := c.do(ctx, http.MethodPost, filePath(id, "/download"), nil, &info)
	return info, err
}

// FileContent calls GET /v1/files/{id}/content from byte offset on: the
// content of a saved file, to read and close.
func (c *Client) FileContent(ctx context.Context, id string, offset int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+filePath(id, "/content"), nil)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return nil, err
	}
	if offset > 0 && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("api: the daemon answered %s to a range request", resp.Status)
	}
	return resp.Body, nil
}
