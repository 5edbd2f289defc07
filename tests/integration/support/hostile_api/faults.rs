//! What the hostile API server does to each request: the rates of each fault, and the fate drawn for one request.

use std::time::Duration;

/// The rates (0 to 1) of each fault, and the latency added. The default is an honest proxy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Each request waits up to this long (uniformly) before it is forwarded.
    pub latency: Duration,
    /// Watches answered at once with the `ERROR` event of an expired resource version (410 Gone), as the API server
    /// sends when etcd compacted past the version asked for.
    pub gone: f64,
    /// Watches cut without a word after up to [`Faults::WATCH_CUT_WITHIN`].
    pub dropped_watch: f64,
    /// Updates (`PUT`, `PATCH`) refused with 409 Conflict, as when another writer got there first.
    pub conflict: f64,
    /// Requests refused with 429 Too Many Requests and `Retry-After: 1`, as API priority and fairness does.
    pub throttled: f64,
    /// Requests refused with 500 or 503 before they reach the API server.
    pub server_error: f64,
    /// Writes the API server carried out whose answer is lost: the client gets 504, as after a timeout.
    pub lost_answer: f64,
}

impl Faults {
    /// How soon a dropped watch is cut.
    pub const WATCH_CUT_WITHIN: Duration = Duration::from_secs(3);
}

/// How a request is treated by the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A `GET ...?watch=true` (or `watch=1`).
    Watch,
    /// `PUT` or `PATCH`: may conflict.
    Update,
    /// `POST` or `DELETE`.
    OtherWrite,
    /// Any other `GET`, `HEAD` or `OPTIONS`.
    Read,
}

impl RequestKind {
    pub fn of(method: &http::Method, query: Option<&str>) -> Self {
        let watch = query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| matches!(pair, "watch=true" | "watch=1"))
        });
        match *method {
            http::Method::PUT | http::Method::PATCH => Self::Update,
            http::Method::POST | http::Method::DELETE => Self::OtherWrite,
            _ if watch => Self::Watch,
            _ => Self::Read,
        }
    }

    /// The name it is counted under.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::Update => "update",
            Self::OtherWrite => "create or delete",
            Self::Read => "read",
        }
    }

    fn is_write(&self) -> bool {
        matches!(self, Self::Update | Self::OtherWrite)
    }
}

/// What happens to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Forwarded after `delay`; a watch's answer is cut after `cut_after`; a write's answer is replaced by 504 when
    /// `lose_answer`.
    Forward {
        delay: Duration,
        cut_after: Option<Duration>,
        lose_answer: bool,
    },
    /// A watch answered with an `ERROR` event of code 410 and closed.
    Gone { delay: Duration },
    /// Refused with this status before it reaches the API server.
    Refused { delay: Duration, code: u16 },
}

impl Fate {
    /// The name this fate is counted under.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Forward {
                cut_after: Some(_), ..
            } => "watch dropped",
            Self::Forward {
                lose_answer: true, ..
            } => "answer lost",
            Self::Forward { delay, .. } if !delay.is_zero() => "delayed",
            Self::Forward { .. } => "forwarded",
            Self::Gone { .. } => "410 Gone",
            Self::Refused { code: 409, .. } => "409 Conflict",
            Self::Refused { code: 429, .. } => "429 Too Many Requests",
            Self::Refused { .. } => "5xx",
        }
    }
}

/// Draws the fate of a request of `kind` under `faults`.
pub fn fate(faults: &Faults, kind: &RequestKind, rng: &mut fastrand::Rng) -> Fate {
    let delay = if faults.latency.is_zero() {
        Duration::ZERO
    } else {
        faults.latency.mul_f64(rng.f64())
    };
    let happens = |rate: f64, rng: &mut fastrand::Rng| rate > 0.0 && rng.f64() < rate;
    if happens(faults.throttled, rng) {
        return Fate::Refused { delay, code: 429 };
    }
    if happens(faults.server_error, rng) {
        let code = if rng.bool() { 500 } else { 503 };
        return Fate::Refused { delay, code };
    }
    match kind {
        RequestKind::Watch if happens(faults.gone, rng) => Fate::Gone { delay },
        RequestKind::Update if happens(faults.conflict, rng) => Fate::Refused { delay, code: 409 },
        _ => {
            let cut_after = (*kind == RequestKind::Watch && happens(faults.dropped_watch, rng))
                .then(|| Faults::WATCH_CUT_WITHIN.mul_f64(rng.f64()));
            let lose_answer = kind.is_write() && happens(faults.lost_answer, rng);
            Fate::Forward {
                delay,
                cut_after,
                lose_answer,
            }
        }
    }
}

/// What happens to a watch already streaming when new faults are set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Midstream {
    /// It gets the `ERROR` event of an expired resource version (410) and ends, as when the API server's watch
    /// cache falls too far behind.
    Expire,
    /// It is cut after this long.
    CutAfter(Duration),
}

impl Midstream {
    /// The name it is counted under (as [`Fate::name`] counts new watches).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Expire => "410 Gone",
            Self::CutAfter(_) => "watch dropped",
        }
    }
}

/// Draws what `faults` do to a watch already streaming: watches expire and are dropped at the same rates as new
/// ones meet.
pub fn midstream(faults: &Faults, rng: &mut fastrand::Rng) -> Option<Midstream> {
    if faults.gone > 0.0 && rng.f64() < faults.gone {
        Some(Midstream::Expire)
    } else if faults.dropped_watch > 0.0 && rng.f64() < faults.dropped_watch {
        Some(Midstream::CutAfter(
            Faults::WATCH_CUT_WITHIN.mul_f64(rng.f64()),
        ))
    } else {
        None
    }
}

/// The reason and message of the Kubernetes `Status` a refusal carries.
pub fn status_of(code: u16) -> (&'static str, &'static str) {
    match code {
        409 => (
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
        ),
        410 => (
            "Expired",
            "too old resource version (injected by the hostile API server)",
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted",
        ),
        _ => (
            "InternalError",
            "an error on the server has prevented the request from succeeding",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(rate: f64) -> Faults {
        Faults {
            latency: Duration::ZERO,
            gone: rate,
            dropped_watch: rate,
            conflict: rate,
            throttled: rate,
            server_error: rate,
            lost_answer: rate,
        }
    }

    #[test]
    fn requests_are_told_apart_by_method_and_watch_parameter() {
        use http::Method;
        let of = RequestKind::of;
        assert_eq!(
            of(&Method::GET, Some("watch=true&resourceVersion=5")),
            RequestKind::Watch
        );
        assert_eq!(
            of(&Method::GET, Some("labelSelector=a&watch=1")),
            RequestKind::Watch
        );
        assert_eq!(of(&Method::GET, Some("watch=false")), RequestKind::Read);
        assert_eq!(
            of(&Method::GET, Some("allowWatchBookmarks=true")),
            RequestKind::Read
        );
        assert_eq!(of(&Method::GET, None), RequestKind::Read);
        assert_eq!(
            of(&Method::PATCH, Some("fieldManager=x")),
            RequestKind::Update
        );
        assert_eq!(of(&Method::PUT, None), RequestKind::Update);
        assert_eq!(of(&Method::POST, None), RequestKind::OtherWrite);
        assert_eq!(of(&Method::DELETE, None), RequestKind::OtherWrite);
    }

    #[test]
    fn an_honest_proxy_forwards_everything_at_once() {
        let mut rng = fastrand::Rng::with_seed(1);
        for kind in [
            RequestKind::Watch,
            RequestKind::Update,
            RequestKind::OtherWrite,
            RequestKind::Read,
        ] {
            for _ in 0..1000 {
                assert_eq!(
                    fate(&Faults::default(), &kind, &mut rng),
                    Fate::Forward {
                        delay: Duration::ZERO,
                        cut_after: None,
                        lose_answer: false
                    }
                );
            }
        }
    }

    #[test]
    fn each_fault_reaches_only_the_requests_it_can_happen_to() {
        let mut rng = fastrand::Rng::with_seed(2);
        let mut seen = std::collections::BTreeMap::<(&str, &str), usize>::new();
        for (label, kind) in [
            ("watch", RequestKind::Watch),
            ("update", RequestKind::Update),
            ("other write", RequestKind::OtherWrite),
            ("read", RequestKind::Read),
        ] {
            for _ in 0..4000 {
                *seen
                    .entry((label, fate(&all(0.3), &kind, &mut rng).name()))
                    .or_default() += 1;
            }
        }
        let names = |label: &str| -> Vec<&str> {
            seen.keys()
                .filter(|(kind, _)| *kind == label)
                .map(|(_, name)| *name)
                .collect()
        };
        assert_eq!(
            names("watch"),
            [
                "410 Gone",
                "429 Too Many Requests",
                "5xx",
                "forwarded",
                "watch dropped"
            ]
        );
        assert_eq!(
            names("update"),
            [
                "409 Conflict",
                "429 Too Many Requests",
                "5xx",
                "answer lost",
                "forwarded"
            ]
        );
        assert_eq!(
            names("other write"),
            ["429 Too Many Requests", "5xx", "answer lost", "forwarded"]
        );
        assert_eq!(names("read"), ["429 Too Many Requests", "5xx", "forwarded"]);
    }

    #[test]
    fn a_streaming_watch_is_left_alone_by_an_honest_proxy_and_cut_by_a_hostile_one() {
        let mut rng = fastrand::Rng::with_seed(4);
        assert_eq!(midstream(&Faults::default(), &mut rng), None);
        assert_eq!(midstream(&all(0.0), &mut rng), None);
        let dropping = Faults {
            dropped_watch: 1.0,
            ..Faults::default()
        };
        for _ in 0..100 {
            match midstream(&dropping, &mut rng) {
                Some(Midstream::CutAfter(after)) => assert!(after <= Faults::WATCH_CUT_WITHIN),
                other => panic!("every watch is cut at rate 1, not {other:?}"),
            }
        }
        let expiring = Faults {
            gone: 1.0,
            dropped_watch: 1.0,
            ..Faults::default()
        };
        assert_eq!(midstream(&expiring, &mut rng), Some(Midstream::Expire));
    }

    #[test]
    fn rates_are_kept_and_latency_stays_within_its_bound() {
        let mut rng = fastrand::Rng::with_seed(3);
        let faults = Faults {
            latency: Duration::from_millis(200),
            throttled: 0.25,
            ..Faults::default()
        };
        let fates: Vec<Fate> = (0..10_000)
            .map(|_| fate(&faults, &RequestKind::Read, &mut rng))
            .collect();
        let throttled = fates
            .iter()
            .filter(|fate| fate.name() == "429 Too Many Requests")
            .count();
        assert!(
            (2_200..2_800).contains(&throttled),
            "{throttled} of 10 000 throttled at 25 %"
        );
        for fate in fates {
            let (Fate::Forward { delay, .. } | Fate::Refused { delay, .. } | Fate::Gone { delay }) =
                fate;
            assert!(delay <= Duration::from_millis(200));
        }
    }
}
