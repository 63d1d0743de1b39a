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

    #[test]
    fn plus_is_a_space_and_empty_pairs_are_skipped() {
        let p = Params::parse(Some("&&a+b=c+d&e=&a+b=second&"));
        assert_eq!(p.get("a b"), Some("c d"), "the first of repeated names");
        assert_eq!(p.get("e"), Some(""));
        assert_eq!(p.get(""), None, "empty pairs are not parameters");
        assert_eq!(p.get("a+b"), None);
        assert_eq!(Params::parse(None).get("r"), None);
    }

    #[test]
    fn flags_accept_true_false_1_and_0() {
        let p = Params::parse(Some("a=true&b=1&c=false&d=0&e=TRUE"));
        assert_eq!(p.flag("a").unwrap(), Some(true));
        assert_eq!(p.flag("b").unwrap(), Some(true));
        assert_eq!(p.flag("c").unwrap(), Some(false));
        assert_eq!(p.flag("d").unwrap(), Some(false));
        assert_eq!(p.flag("missing").unwrap(), None);
        match p.flag("e") {
            Err(HttpError::Status(s, m)) => {
                assert_eq!(s, 400);
                assert_eq!(m, "e query parameter must be true or false");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn quorums_and_timeouts_decode_and_name_the_parameter_when_malformed() {
        let p = Params::parse(Some("r=2&w=all&timeout=1500&pr=x"));
        assert_eq!(p.quorum("r").unwrap(), Some(Quorum::N(2)));
        assert_eq!(p.quorum("w").unwrap(), Some(Quorum::All));
        assert_eq!(p.timeout().unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(Params::parse(None).timeout().unwrap(), None);
        match p.quorum("pr") {
            Err(HttpError::Status(s, m)) => {
                assert_eq!(s, 400);
                assert!(m.starts_with("pr query parameter must be"), "{m}");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }
}
