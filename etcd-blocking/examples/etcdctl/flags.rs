//! Command-line flags with the rules of spf13/pflag, which etcdctl uses: `--flag=value`,
//! `--flag value`, `-f value`, `-fvalue`, `-f=value`, boolean flags without a value, flags
//! anywhere among the arguments, and `--` ending the flags. Values are parsed as Go parses
//! them, and every error reads as pflag's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::gofmt::{go_parse_bool, go_parse_duration, go_parse_int};

/// The type of a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    /// `int` / `int64`: parsed with base prefixes, like Go's `strconv.ParseInt(s, 0, 64)`.
    Int,
    Dur,
    /// `[]string`, comma separated; the first use replaces the default, later ones append.
    List,
}

/// One flag definition.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    pub default: &'static str,
}

pub const fn flag(name: &'static str, kind: Kind, default: &'static str) -> Spec {
    Spec {
        name,
        short: None,
        kind,
        default,
    }
}

pub const fn short(name: &'static str, c: char, kind: Kind, default: &'static str) -> Spec {
    Spec {
        name,
        short: Some(c),
        kind,
        default,
    }
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Bool(bool),
    Str(String),
    Int(i64),
    Dur(Duration),
    List(Vec<String>),
}

impl Val {
    /// The value as pflag's `Value.String()` shows it (`--debug` prints them).
    pub fn show(&self) -> String {
        match self {
            Val::Bool(b) => b.to_string(),
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Dur(d) => crate::gofmt::go_duration(*d),
            Val::List(l) => format!("[{}]", l.join(",")),
        }
    }
}

/// The flags of one command (its own and the inherited global ones), with their values.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    specs: Vec<Spec>,
    vals: BTreeMap<&'static str, Val>,
    changed: BTreeSet<&'static str>,
}

fn parse_value(spec: &Spec, s: &str) -> Result<Val, String> {
    Ok(match spec.kind {
        Kind::Bool => Val::Bool(go_parse_bool(s)?),
        Kind::Str => Val::Str(s.to_string()),
        Kind::Int => Val::Int(go_parse_int(s, 0, 64)?),
        Kind::Dur => Val::Dur(go_parse_duration(s)?),
        Kind::List => Val::List(if s.is_empty() {
            Vec::new()
        } else {
            s.split(',').map(str::to_string).collect()
        }),
    })
}

impl Flags {
    pub fn new(specs: Vec<Spec>) -> Flags {
        let mut vals = BTreeMap::new();
        for spec in &specs {
            let v = parse_value(spec, spec.default).expect("valid default");
            vals.insert(spec.name, v);
        }
        Flags {
            specs,
            vals,
            changed: BTreeSet::new(),
        }
    }

    pub fn lookup(&self, name: &str) -> Option<&Spec> {
        self.specs.iter().find(|s| s.name == name)
    }

    fn lookup_short(&self, c: char) -> Option<&Spec> {
        self.specs.iter().find(|s| s.short == Some(c))
    }

    /// Whether `--name` takes no value (a boolean: pflag's `NoOptDefVal`).
    pub fn is_bool(&self, name: &str) -> bool {
        self.lookup(name).is_some_and(|s| s.kind == Kind::Bool)
    }

    pub fn is_bool_short(&self, c: char) -> bool {
        self.lookup_short(c).is_some_and(|s| s.kind == Kind::Bool)
    }

    /// Sets a flag from text, as `fs.Set` does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let spec = *self
            .lookup(name)
            .ok_or_else(|| format!("no such flag -{name}"))?;
        let v = parse_value(&spec, value)?;
        let v = match (v, self.vals.get(spec.name)) {
            (Val::List(new), Some(Val::List(old))) if self.changed.contains(spec.name) => {
                let mut all = old.clone();
                all.extend(new);
                Val::List(all)
            }
            (v, _) => v,
        };
        self.vals.insert(spec.name, v);
        self.changed.insert(spec.name);
        Ok(())
    }

    fn set_checked(&mut self, spec: Spec, value: &str) -> Result<(), String> {
        self.set(spec.name, value).map_err(|e| {
            let name = match spec.short {
                Some(c) => format!("-{c}, --{}", spec.name),
                None => format!("--{}", spec.name),
            };
            format!(
                "invalid argument {} for {} flag: {e}",
                crate::gofmt::go_quote_str(value),
                crate::gofmt::go_quote_str(&name)
            )
        })
    }

    /// Parses `args` (interspersed flags and arguments); returns the positional arguments.
    pub fn parse(&mut self, args: &[String]) -> Result<Vec<String>, String> {
        let mut positional = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let s = &args[i];
            i += 1;
            if s.len() < 2 || !s.starts_with('-') {
                positional.push(s.clone());
                continue;
            }
            if s == "--" {
                positional.extend(args[i..].iter().cloned());
                break;
            }
            if let Some(long) = s.strip_prefix("--") {
                if long.starts_with('-') || long.starts_with('=') {
                    return Err(format!("bad flag syntax: {s}"));
                }
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (long, None),
                };
                let Some(spec) = self.lookup(name).copied() else {
                    return Err(format!("unknown flag: --{name}"));
                };
                let value = match inline {
                    Some(v) => v.to_string(),
                    None if spec.kind == Kind::Bool => "true".to_string(),
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => return Err(format!("flag needs an argument: {s}")),
                };
                self.set_checked(spec, &value)?;
            } else {
                let shorts: Vec<char> = s[1..].chars().collect();
                let mut j = 0;
                while j < shorts.len() {
                    let c = shorts[j];
                    let rest: String = shorts[j..].iter().collect();
                    let Some(spec) = self.lookup_short(c).copied() else {
                        return Err(format!("unknown shorthand flag: '{c}' in -{rest}"));
                    };
                    let value;
                    if shorts.len() > j + 2 && shorts[j + 1] == '=' {
                        value = shorts[j + 2..].iter().collect();
                        j = shorts.len();
                    } else if spec.kind == Kind::Bool {
                        value = "true".to_string();
                        j += 1;
                    } else if shorts.len() > j + 1 {
                        value = shorts[j + 1..].iter().collect();
                        j = shorts.len();
                    } else if i < args.len() {
                        value = args[i].clone();
                        i += 1;
                        j += 1;
                    } else {
                        return Err(format!("flag needs an argument: '{c}' in -{rest}"));
                    }
                    self.set_checked(spec, &value)?;
                }
            }
        }
        Ok(positional)
    }

    pub fn changed(&self, name: &str) -> bool {
        self.changed.contains(name)
    }

    pub fn get(&self, name: &str) -> &Val {
        self.vals
            .get(name)
            .unwrap_or_else(|| panic!("flag {name} is not defined"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.vals.contains_key(name)
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            Val::Bool(b) => *b,
            v => panic!("flag {name} is {v:?}"),
        }
    }

    pub fn str(&self, name: &str) -> String {
        match self.get(name) {
            Val::Str(s) => s.clone(),
            v => panic!("flag {name} is {v:?}"),
        }
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Val::Int(i) => *i,
            v => panic!("flag {name} is {v:?}"),
        }
    }

    pub fn dur(&self, name: &str) -> Duration {
        match self.get(name) {
            Val::Dur(d) => *d,
            v => panic!("flag {name} is {v:?}"),
        }
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Val::List(l) => l.clone(),
            v => panic!("flag {name} is {v:?}"),
        }
    }

    /// Every flag, by name (pflag's `VisitAll` order).
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &Val)> {
        self.vals.iter().map(|(k, v)| (*k, v))
    }
}
