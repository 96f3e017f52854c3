//! Settings from three places with one set of definitions: the flags ([`Cli`]), the
//! environment (`PUSHLOOP_<FLAG>`, added to every flag here) and a TOML file whose keys
//! are the flags' names. Precedence: flags, then environment, then file, then defaults.
//!
//! The file is not parsed into a struct of its own: each key becomes the flag it names
//! and goes through clap's own parser, so a value is checked the same way whichever
//! place it comes from, and a new flag needs no line here. A key that names no flag, a
//! value clap refuses, an array for a single-valued flag: an error naming the key and
//! its line.

use crate::cli::flags::{Cli, Command};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

/// Flags that are not settings: no key, no variable.
const NOT_SETTINGS: [&str; 3] = ["config", "help", "version"];

/// What a masked secret prints as.
const MASKED: &str = "********";

/// The variable of flag `long`: `PUSHLOOP_MAX_MESSAGE` for `max-message`.
pub fn env_name(long: &str) -> String {
    format!("PUSHLOOP_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The flags' command, with a `PUSHLOOP_<FLAG>` variable on every setting.
pub fn command() -> clap::Command {
    Cli::command().mut_args(|arg| match arg.get_long() {
        Some(long) if arg.get_env().is_none() && !NOT_SETTINGS.contains(&long) => {
            let name = env_name(long);
            arg.env(name)
        }
        _ => arg,
    })
}

/// A settings error, for the user (exit status 2).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The settings, and what check-config prints.
pub struct Loaded {
    /// The parsed flags.
    pub cli: Cli,
    /// Every setting's effective value, one `key = value` TOML line each (secrets masked).
    pub effective: String,
}

/// Parses `args` (with the program name first), the environment and the config file
/// (`--config`, `PUSHLOOP_CONFIG`, or `check-config FILE`). Help, version and malformed
/// flags are clap's errors, returned as they are (`exit()` prints them).
pub fn load(args: &[OsString]) -> Result<Result<Loaded, ConfigError>, clap::Error> {
    let first = command().try_get_matches_from(args)?;
    let file = match first.subcommand() {
        Some(("check-config", sub)) => sub.get_one::<std::path::PathBuf>("file").cloned(),
        _ => first.get_one::<std::path::PathBuf>("config").cloned(),
    };
    let Some(file) = file else {
        return Ok(finish(&first));
    };
    let from_file = match file_args(&file) {
        Ok(args) => args,
        Err(e) => return Ok(Err(e)),
    };
    // The file's values, for the settings the flags and the environment left at their
    // defaults, go in front of the flags (before any subcommand).
    let mut all = vec![args[0].clone()];
    for (key, values) in from_file {
        let source = first.value_source(&key.id);
        if matches!(source, None | Some(ValueSource::DefaultValue)) {
            all.extend(values);
        }
    }
    all.extend(args[1..].iter().cloned());
    match command().try_get_matches_from(&all) {
        Ok(matches) => Ok(finish(&matches)),
        Err(e) => Ok(Err(ConfigError(format!(
            "{}: {}",
            file.display(),
            first_line(&e)
        )))),
    }
}

/// The flags parsed, and the effective settings printed.
fn finish(matches: &ArgMatches) -> Result<Loaded, ConfigError> {
    let cli = Cli::from_arg_matches(matches).map_err(|e| ConfigError(first_line(&e)))?;
    Ok(Loaded {
        cli,
        effective: effective(matches),
    })
}

/// The first line of a clap error, without its `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// A setting the file names: its flag's id.
struct Key {
    id: String,
}

/// The 1-based line of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads `file` and turns each key into its flag's arguments, each checked alone by
/// clap (so an error names the key and its line).
fn file_args(file: &Path) -> Result<Vec<(Key, Vec<OsString>)>, ConfigError> {
    let name = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError(format!("cannot read {name}: {e}")))?;
    let table: BTreeMap<String, toml::Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| ConfigError(format!("{name}: not valid TOML: {}", e.message())))
        .map_err(|mut e| {
            if let Some(span) = toml::from_str::<toml::Table>(&text)
                .err()
                .and_then(|e| e.span())
            {
                e.0 = format!("{} (line {})", e.0, line_of(&text, span.start));
            }
            e
        })?;
    let command = command();
    let mut out = Vec::new();
    for (key, value) in table {
        let line = line_of(&text, value.span().start);
        let at = |what: String| ConfigError(format!("{name}:{line}: {key}: {what}"));
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|_| !NOT_SETTINGS.contains(&key.as_str()))
            .ok_or_else(|| ConfigError(format!("{name}:{line}: unknown key {key}")))?;
        let multiple = matches!(arg.get_action(), ArgAction::Append);
        let flag = matches!(arg.get_action(), ArgAction::SetTrue);
        let values = match value.into_inner() {
            toml::Value::Array(items) if multiple => items,
            toml::Value::Array(_) => return Err(at("takes one value, not an array".into())),
            single => vec![single],
        };
        let mut args = Vec::new();
        for value in values {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) if flag => {
                    if b {
                        args.push(OsString::from(format!("--{key}")));
                    }
                    continue;
                }
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(at(format!("unsupported value {other}"))),
            };
            if flag {
                return Err(at(format!("takes true or false, not {text:?}")));
            }
            args.push(OsString::from(format!("--{key}={text}")));
        }
        // Checked alone, so that the error is this key's.
        let mut alone = vec![OsString::from("pushloop")];
        alone.extend(args.iter().cloned());
        if let Err(e) = command.clone().try_get_matches_from(&alone) {
            return Err(at(first_line(&e)));
        }
        let id = arg.get_id().to_string();
        out.push((Key { id }, args));
    }
    Ok(out)
}

/// Every setting as a TOML line, in the flags' order, secrets masked.
fn effective(matches: &ArgMatches) -> String {
    let mut out = String::new();
    for arg in command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let secret = arg.is_hide_env_values_set();
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            let _ = writeln!(out, "{long} = {}", matches.get_flag(id));
            continue;
        }
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let show = |v: &str| {
            if secret {
                format!("{MASKED:?}")
            } else {
                toml_value(v)
            }
        };
        if matches!(arg.get_action(), ArgAction::Append) {
            let shown: Vec<String> = values
                .iter()
                .map(|v| {
                    if secret {
                        format!("{MASKED:?}")
                    } else {
                        format!("{v:?}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{long} = [{}]", shown.join(", "));
        } else if let Some(value) = values.first() {
            let _ = writeln!(out, "{long} = {}", show(value));
        } else {
            let _ = writeln!(out, "# {long} is not set");
        }
    }
    out
}

/// A value as TOML: a number as it is, anything else quoted.
fn toml_value(v: &str) -> String {
    let number = v.parse::<i64>().is_ok()
        || (v.parse::<f64>().is_ok_and(f64::is_finite) && !v.contains(['i', 'n', 'I', 'N']));
    if number {
        v.to_owned()
    } else {
        format!("{v:?}")
    }
}

/// Whether `command` is `check-config`.
pub fn is_check(command: &Option<Command>) -> bool {
    matches!(command, Some(Command::CheckConfig { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_named_after_flags() {
        assert_eq!(env_name("max-message"), "PUSHLOOP_MAX_MESSAGE");
    }

    #[test]
    fn numbers_print_bare_and_the_rest_quoted() {
        assert_eq!(toml_value("16"), "16");
        assert_eq!(toml_value("2.5"), "2.5");
        assert_eq!(toml_value("chat"), "\"chat\"");
        assert_eq!(toml_value("inf"), "\"inf\"");
        assert_eq!(toml_value("127.0.0.1:80"), "\"127.0.0.1:80\"");
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
    }
}
