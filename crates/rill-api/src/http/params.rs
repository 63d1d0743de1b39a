//! Query-string parameters as Riak reads them: quorum values (`r`, `w`, ...), booleans and
//! timeouts, each refused with a clear 400 message when malformed.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use rill_core::props::Quorum;

use super::HttpError;

/// The decoded query string of a request.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(query: Option<&str>) -> Params {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Params(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A quorum parameter: an integer or one of `one`, `quorum`, `all`, `default`.
    pub(crate) fn quorum(&self, name: &str) -> Result<Option<Quorum>, HttpError> {
        self.get(name)
            .map(|v| {
                v.parse::<Quorum>().map_err(|_| {
                    HttpError::bad_request(format!(
                        "{name} query parameter must be an integer or one of the following words: \
                         'one', 'quorum', 'all' or 'default'"
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter (`true`/`false`).
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, HttpError> {
        self.get(name)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(HttpError::bad_request(format!(
                    "{name} query parameter must be true or false"
                ))),
            })
            .transpose()
    }

    /// `timeout` in milliseconds.
    pub(crate) fn timeout(&self) -> Result<Option<Duration>, HttpError> {
        self.get("timeout")
            .map(|v| {
                v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    HttpError::bad_request(
                        "timeout query parameter must be an integer (milliseconds)",
                    )
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let p = Params::parse(Some("r=quorum&returnbody=true&vtag=a%2Bb&x"));
        assert_eq!(p.get("r"), Some("quorum"));
        assert_eq!(p.get("vtag"), Some("a+b"));
        assert_eq!(p.get("x"), Some(""));
        assert_eq!(p.flag("returnbody").unwrap(), Some(true));
        assert_eq!(p.quorum("r").unwrap(), Some(Quorum::Quorum));
        assert_eq!(p.quorum("w").unwrap(), None);
    }

    #[test]
    fn malformed_values_are_400s() {
        let p = Params::parse(Some("r=lots&returnbody=maybe&timeout=soon"));
        assert!(matches!(p.quorum("r"), Err(HttpError::Status(s, _)) if s == 400));
        assert!(p.flag("returnbody").is_err());
        assert!(p.timeout().is_err());
    }
}
