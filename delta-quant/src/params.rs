//! Parsing of `key=value` parameter lists inside method strings.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::QuantError;

/// The parameters given for one method stage, checked against the keys it
/// knows: what a [`MethodInfo::build`](crate::MethodInfo::build) function
/// reads its parameters from (values stay text until `get` parses them).
#[derive(Debug, Clone)]
pub struct ParamList {
    method: String,
    map: BTreeMap<String, String>,
}

impl ParamList {
    /// Splits `a=1,b=2` (the text after `name:` in `spec`), rejecting
    /// duplicate keys and keys not in `valid`.
    pub fn parse(
        method: &str,
        spec: &str,
        text: Option<&str>,
        valid: &[&str],
    ) -> Result<Self, QuantError> {
        let mut map = BTreeMap::new();
        if let Some(text) = text {
            for item in text.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    return Err(QuantError::Syntax {
                        spec: spec.to_string(),
                        reason: format!("empty parameter in `{method}`"),
                    });
                }
                let (k, v) = item.split_once('=').ok_or_else(|| QuantError::Syntax {
                    spec: spec.to_string(),
                    reason: format!("parameter `{item}` of `{method}` is not key=value"),
                })?;
                let (k, v) = (k.trim(), v.trim());
                if !valid.contains(&k) {
                    return Err(QuantError::UnknownParam {
                        method: method.to_string(),
                        param: k.to_string(),
                        valid: if valid.is_empty() {
                            "(none)".into()
                        } else {
                            valid.join(", ")
                        },
                    });
                }
                if map.insert(k.to_string(), v.to_string()).is_some() {
                    return Err(QuantError::Syntax {
                        spec: spec.to_string(),
                        reason: format!("parameter `{k}` of `{method}` given twice"),
                    });
                }
            }
        }
        Ok(Self {
            method: method.to_string(),
            map,
        })
    }

    /// A [`QuantError::InvalidParam`] for `param` = `value`.
    pub fn invalid(&self, param: &str, value: &str, reason: impl Into<String>) -> QuantError {
        QuantError::InvalidParam {
            method: self.method.clone(),
            param: param.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// The text given for `key`, if any.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Parses `key` as `T`, or returns `default` when absent.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T, QuantError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<T>().map_err(|_| {
                self.invalid(key, v, format!("expected {}", std::any::type_name::<T>()))
            }),
        }
    }

    /// Like [`ParamList::get`] with a range check.
    pub fn get_in<T: FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &str,
        default: T,
        lo: T,
        hi: T,
        what: &str,
    ) -> Result<T, QuantError> {
        let v = self.get(key, default)?;
        if v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(self.invalid(key, &v.to_string(), format!("must be {what}")))
        }
    }
}
