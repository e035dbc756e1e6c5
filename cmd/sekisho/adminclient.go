package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// adminClient talks to a running connector's admin API, authenticated
// with the bearer token of its admin.token_file.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// adminFlags are the flags that find a connector's admin API: its config
// file (admin.listen and admin.token_file), or both given directly.
type adminFlags struct {
	config, url, tokenFile string
}

func (f *adminFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "connector", "", "the connector's config file (to find its admin listener and token)")
	cmd.Flags().StringVar(&f.url, "admin", "", "the connector's admin URL, e.g. http://127.0.0.1:9181")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the admin bearer token")
}

func (f *adminFlags) client() (*adminClient, error) {
	url, tokenFile := f.url, f.tokenFile
	if f.config != "" {
		cf, err := loadConnector(f.config)
		if err != nil {
			return nil, err
		}
		if url == "" {
			url = "http://" + cf.Admin.Listen
		}
		if tokenFile == "" {
			tokenFile = cf.Admin.TokenFile
		}
	}
	if url == "" || tokenFile == "" {
		return nil, errors.New("say which connector: --connector FILE, or --admin URL and --token-file FILE")
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, err
	}
	return &adminClient{base: strings.TrimSuffix(url, "/"), token: strings.TrimSpace(string(tok)),
		http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// call makes one request and decodes the JSON answer into out.
func (c *adminClient) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}
