//! `--config FILE`: the settings of a TOML file, as the flags they stand
//! for. A key is a flag's long name (`list_ttl` or `list-ttl` for
//! `--list-ttl`); a value is a string, a number, a boolean, or an array of
//! strings (joined with commas, as the list flags take them).
//!
//! Owns reading and shaping the file. It never decides precedence nor
//! validates a value: the command line reads the settings as if they had
//! been typed after every flag actually given (see `flags::parse_cli`), so
//! one parser checks both and a flag or `GOMODPROXY_*` variable overrides
//! the file.

use std::path::Path;

use super::ConfigError;

/// One setting: the flag's long name (dashes) and its value as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub flag: String,
    pub value: String,
}

/// The settings in the file at `path` (a key given twice is a TOML error).
pub fn read(path: &Path) -> Result<Vec<Setting>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot be read: {e}")))?;
    parse(path, &text)
}

fn bad(path: &Path, reason: String) -> ConfigError {
    ConfigError::ConfigFile { path: path.to_path_buf(), reason }
}

fn parse(path: &Path, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(path, e.message().to_string()))?;
    let mut settings = Vec::with_capacity(table.len());
    for (key, value) in table {
        if key == "git" {
            return Err(bad(
                path,
                "[[git]] sources: fetching modules from Git is not implemented yet; modules come from --upstream".into(),
            ));
        }
        let flag = key.replace('_', "-");
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let strings: Option<Vec<String>> = items.into_iter().map(|v| v.as_str().map(str::to_string)).collect();
                strings.ok_or_else(|| bad(path, format!("{key}: a list must hold strings only")))?.join(",")
            }
            toml::Value::Table(_) | toml::Value::Datetime(_) => {
                return Err(bad(path, format!("{key}: not a setting (a string, number, boolean or list of strings)")))
            }
        };
        settings.push(Setting { flag, value });
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
        parse(Path::new("test.toml"), text).map(|s| s.into_iter().map(|s| (s.flag, s.value)).collect())
    }

    #[test]
    fn values_become_the_flags_they_stand_for() {
        let got = settings(
            "listen = \"0.0.0.0:8080\"\nlist_ttl = \"30s\"\ncores = 4\nprivate = [\"*.corp.example\", \"git.corp.example\"]\nupstream-retries = 2\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                ("cores", "4"),
                ("list-ttl", "30s"),
                ("listen", "0.0.0.0:8080"),
                ("private", "*.corp.example,git.corp.example"),
                ("upstream-retries", "2")
            ]
            .map(|(f, v)| (f.to_string(), v.to_string()))
        );
    }

    #[test]
    fn shapes_that_are_no_setting_are_refused_with_the_key() {
        for (text, key) in [
            ("[server]\nlisten = \"x\"\n", "server"),
            ("private = [1, 2]\n", "private"),
            ("when = 1979-05-27\n", "when"),
            ("[[git]]\npattern = \"x/*\"\n", "not implemented"),
        ] {
            let e = settings(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("test.toml"), "{e}");
        }
        let e = settings("listen = \n").unwrap_err().to_string();
        assert!(e.contains("test.toml"), "{e}");
    }
}
