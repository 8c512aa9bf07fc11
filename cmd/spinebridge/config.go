package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// config is the whole Spinebridge configuration. It is loaded in one place,
// loadConfig, from (lowest to highest precedence) built-in defaults, the --config
// file, SPINEBRIDGE_<KEY> environment variables and command-line flags; components
// receive the plain typed parts they need, never viper.
type config struct {
	HL7 hl7Config `mapstructure:"hl7"`
}

// hl7Config is how HL7 v2 bytes are read.
type hl7Config struct {
	// DefaultCharset is the MSH-18 character set assumed for a message that does not
	// declare one. Empty means HL7's default (ASCII), read leniently: valid UTF-8 is
	// kept and other bytes are taken as Windows-1252.
	DefaultCharset string `mapstructure:"default_charset"`
}

// loadConfig builds the configuration for cmd. flags maps configuration keys to the
// names of cmd's flags that override them.
func loadConfig(cmd *cobra.Command, flags map[string]string) (config, error) {
	v := viper.New()
	v.SetEnvPrefix("SPINEBRIDGE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	v.SetDefault("hl7.default_charset", "")
	for key, name := range flags {
		if err := v.BindPFlag(key, cmd.Flags().Lookup(name)); err != nil {
			return config{}, fmt.Errorf("config: bind --%s: %w", name, err)
		}
	}
	if file, _ := cmd.Flags().GetString("config"); file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return config{}, usageError{fmt.Errorf("config: %s: not found", file)}
			}
			return config{}, fmt.Errorf("config: %s: %w", file, err)
		}
	}
	var c config
	if err := v.UnmarshalExact(&c); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}
