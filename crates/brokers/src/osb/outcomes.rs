//! What each OSB answer means, call by call, following the status tables of
//! the spec (v2.15): which statuses are success, which bodies are valid, and
//! — for provision and bind — whether the outcome is unknown enough that the
//! platform must send orphan mitigation (the spec's "Orphan Mitigation"
//! table). Pure functions of the [`Exchange`], so the table is tested without
//! a network.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::transport::{Answer, Exchange};
use super::{
    catalog, BindingDetails, Bound, BrokerError, Catalog, Deprovisioned, LastOperation,
    OperationKind, OperationState, Provisioned, Unbound, Updated,
};

/// Longest `operation` the spec allows a broker to return.
const MAX_OPERATION_CHARS: usize = 10_000;
/// How much of an unstructured error body goes into an error message.
const SUMMARY_CHARS: usize = 200;

/// A call's result and whether the resource may now exist on the broker
/// without the platform knowing it (orphan mitigation needed).
#[derive(Debug)]
pub(crate) struct Outcome<T> {
    pub result: Result<T, BrokerError>,
    pub orphan_mitigation: bool,
}

impl<T> Outcome<T> {
    fn ok(value: T) -> Self {
        Outcome {
            result: Ok(value),
            orphan_mitigation: false,
        }
    }

    fn err(error: BrokerError, orphan_mitigation: bool) -> Self {
        Outcome {
            result: Err(error),
            orphan_mitigation,
        }
    }
}

/// `GET /v2/catalog`: 200 with a catalog that passes [`catalog::validate`].
pub(crate) fn catalog(url: &str, exchange: Exchange) -> Result<Catalog, BrokerError> {
    const CALL: &str = "catalog";
    let answer = answered(exchange)?;
    if answer.status.as_u16() != 200 {
        return Err(failure(url, CALL, answer));
    }
    let catalog: Catalog = decode(url, CALL, &answer.body?, false)?;
    catalog::validate(&catalog).map_err(|reason| malformed(url, CALL, reason))?;
    Ok(catalog)
}

/// Body of a provision's success.
#[derive(Deserialize)]
struct ProvisionBody {
    #[serde(default)]
    dashboard_url: Option<String>,
    #[serde(default)]
    operation: Option<String>,
}

/// `PUT /v2/service_instances/:id`.
pub(crate) fn provision(url: &str, exchange: Exchange) -> Outcome<Provisioned> {
    const CALL: &str = "provision";
    creation(url, CALL, exchange, |status, body| {
        let parsed: ProvisionBody = decode(url, CALL, body, true)?;
        let operation = operation(url, CALL, parsed.operation)?;
        Ok(if status == 202 {
            Provisioned::InProgress {
                operation,
                dashboard_url: parsed.dashboard_url,
            }
        } else {
            Provisioned::Done {
                dashboard_url: parsed.dashboard_url,
            }
        })
    })
}

/// `PUT …/service_bindings/:bid`.
pub(crate) fn bind(url: &str, exchange: Exchange) -> Outcome<Bound> {
    const CALL: &str = "bind";
    creation(url, CALL, exchange, |status, body| {
        if status == 202 {
            let parsed: OperationBody = decode(url, CALL, body, true)?;
            Ok(Bound::InProgress {
                operation: operation(url, CALL, parsed.operation)?,
            })
        } else {
            Ok(Bound::Done(decode(url, CALL, body, true)?))
        }
    })
}

/// Provision and bind share the spec's table: 200/201/202 succeed; orphan
/// mitigation after a timeout or a connection lost once the request may
/// have arrived, a 5xx, a 201 whose body is unusable, or any other 2xx. Not
/// after a 200 (the resource existed before this request), a 202, a
/// 4xx (the broker changed nothing) or a 408.
fn creation<T>(
    url: &str,
    call: &'static str,
    exchange: Exchange,
    parse: impl FnOnce(u16, &[u8]) -> Result<T, BrokerError>,
) -> Outcome<T> {
    let answer = match exchange {
        Exchange::NoAnswer {
            error,
            may_have_arrived,
        } => return Outcome::err(error, may_have_arrived),
        Exchange::Answered(answer) => answer,
    };
    let status = answer.status.as_u16();
    match status {
        200..=202 => {
            let body = match answer.body {
                Ok(body) => body,
                // A deadline passed mid-body is a timeout, whatever the status.
                Err(e @ BrokerError::Timeout { .. }) => return Outcome::err(e, true),
                Err(e) => return Outcome::err(e, status == 201),
            };
            match parse(status, &body) {
                Ok(value) => Outcome::ok(value),
                Err(e) => Outcome::err(e, status == 201),
            }
        }
        _ => {
            let unknown = answer.status.is_server_error()
                || answer.status.is_success()
                || matches!(answer.body, Err(BrokerError::Timeout { .. }));
            Outcome::err(failure(url, call, answer), unknown)
        }
    }
}

/// Body of an update's success.
#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    dashboard_url: Option<String>,
    #[serde(default)]
    operation: Option<String>,
}

/// `PATCH /v2/service_instances/:id`: 200 or 202; never orphan mitigation.
pub(crate) fn update(url: &str, exchange: Exchange) -> Result<Updated, BrokerError> {
    const CALL: &str = "update";
    let answer = answered(exchange)?;
    match answer.status.as_u16() {
        status @ (200 | 202) => {
            let parsed: UpdateBody = decode(url, CALL, &answer.body?, true)?;
            let operation = operation(url, CALL, parsed.operation)?;
            Ok(if status == 202 {
                Updated::InProgress { operation }
            } else {
                Updated::Done {
                    dashboard_url: parsed.dashboard_url,
                }
            })
        }
        _ => Err(failure(url, CALL, answer)),
    }
}

/// Body of a 202 that only carries an operation.
#[derive(Deserialize)]
struct OperationBody {
    #[serde(default)]
    operation: Option<String>,
}

/// `DELETE /v2/service_instances/:id`: 200 or 410 done, 202 in progress.
pub(crate) fn deprovision(url: &str, exchange: Exchange) -> Result<Deprovisioned, BrokerError> {
    const CALL: &str = "deprovision";
    match deletion(url, CALL, exchange)? {
        None => Ok(Deprovisioned::Done),
        Some(operation) => Ok(Deprovisioned::InProgress { operation }),
    }
}

/// `DELETE …/service_bindings/:bid`: 200 or 410 done, 202 in progress.
pub(crate) fn unbind(url: &str, exchange: Exchange) -> Result<Unbound, BrokerError> {
    const CALL: &str = "unbind";
    match deletion(url, CALL, exchange)? {
        None => Ok(Unbound::Done),
        Some(operation) => Ok(Unbound::InProgress { operation }),
    }
}

/// `None` when the resource is gone, `Some(operation)` when going.
fn deletion(
    url: &str,
    call: &'static str,
    exchange: Exchange,
) -> Result<Option<Option<String>>, BrokerError> {
    let answer = answered(exchange)?;
    match answer.status.as_u16() {
        // The body of a 200 is `{}` and of a 410 anything: neither matters,
        // so an unreadable one does not turn a done delete into a failure.
        200 | 410 => Ok(None),
        202 => {
            let parsed: OperationBody = decode(url, call, &answer.body?, true)?;
            Ok(Some(operation(url, call, parsed.operation)?))
        }
        _ => Err(failure(url, call, answer)),
    }
}

/// Body of `last_operation`.
#[derive(Deserialize)]
struct LastOperationBody {
    state: OperationState,
    #[serde(default)]
    description: Option<String>,
}

/// `GET …/last_operation`: 200 with a state; 410 is success for a delete
/// and an invalid answer otherwise (the spec says to keep polling).
pub(crate) fn last_operation(
    url: &str,
    call: &'static str,
    kind: OperationKind,
    exchange: Exchange,
) -> Result<LastOperation, BrokerError> {
    let answer = answered(exchange)?;
    match answer.status.as_u16() {
        200 => {
            let parsed: LastOperationBody = decode(url, call, &answer.body?, false)?;
            Ok(LastOperation {
                state: parsed.state,
                description: parsed.description.filter(|d| !d.is_empty()),
                retry_after: answer.retry_after,
            })
        }
        410 if kind == OperationKind::Delete => Ok(LastOperation {
            state: OperationState::Succeeded,
            description: None,
            retry_after: None,
        }),
        410 => Err(BrokerError::Rejected {
            url: url.to_string(),
            call,
            status: 410,
            error: None,
            description: format!(
                "the broker says the resource is gone while its {} is in progress",
                kind.noun()
            ),
        }),
        _ => Err(failure(url, call, answer)),
    }
}

/// `GET …/service_bindings/:bid`: 200 with the binding.
pub(crate) fn fetch_binding(url: &str, exchange: Exchange) -> Result<BindingDetails, BrokerError> {
    const CALL: &str = "fetch_binding";
    let answer = answered(exchange)?;
    match answer.status.as_u16() {
        200 => decode(url, CALL, &answer.body?, false),
        _ => Err(failure(url, CALL, answer)),
    }
}

/// The answer, or the error of a call that got none.
fn answered(exchange: Exchange) -> Result<Answer, BrokerError> {
    match exchange {
        Exchange::NoAnswer { error, .. } => Err(error),
        Exchange::Answered(answer) => Ok(answer),
    }
}

/// The error for a status the call does not accept: `Rejected` with the
/// broker's `error` and `description` for 1xx, 3xx, 4xx and 5xx;
/// `Malformed` for a 2xx the spec does not allow for this call.
fn failure(url: &str, call: &'static str, answer: Answer) -> BrokerError {
    if answer.status.is_success() {
        return malformed(url, call, format!("unexpected status {}", answer.status));
    }
    let (error, description) = match &answer.body {
        Ok(body) => error_fields(body),
        Err(e) => (
            None,
            Some(format!("(the error body could not be read: {e})")),
        ),
    };
    let description = description.unwrap_or_else(|| {
        answer
            .status
            .canonical_reason()
            .unwrap_or("no description")
            .to_string()
    });
    BrokerError::Rejected {
        url: url.to_string(),
        call,
        status: answer.status.as_u16(),
        error,
        description,
    }
}

/// The OSB `error` code and `description` of an error body, falling back to
/// the start of the body when it is not the spec's JSON.
fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) {
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let error = text("error");
        if let Some(description) = text("description") {
            return (error, Some(description));
        }
        // The code alone says enough; any other object is shown as it came.
        if object.is_empty() || error.is_some() {
            return (error, None);
        }
        return (None, Some(summary(body)));
    }
    let summary = summary(body);
    (None, (!summary.is_empty()).then_some(summary))
}

/// The first characters of a body, printable, for a message.
fn summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SUMMARY_CHARS {
        let cut: String = text.chars().take(SUMMARY_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn malformed(url: &str, call: &'static str, reason: String) -> BrokerError {
    BrokerError::Malformed {
        url: url.to_string(),
        call,
        reason,
    }
}

/// A JSON object body as `T`. Brokers often answer an empty body where the
/// spec says `{}`; `empty_is_object` accepts that where no field is required.
fn decode<T: DeserializeOwned>(
    url: &str,
    call: &'static str,
    body: &[u8],
    empty_is_object: bool,
) -> Result<T, BrokerError> {
    let value: Value = if empty_is_object && body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| malformed(url, call, format!("the body is not JSON ({e})")))?
    };
    if !value.is_object() {
        return Err(malformed(
            url,
            call,
            "the body is not a JSON object".to_string(),
        ));
    }
    serde_json::from_value(value).map_err(|e| malformed(url, call, e.to_string()))
}

/// An `operation` as the platform must echo it: absent or empty is `None`,
/// longer than the spec's 10 000 characters is invalid.
fn operation(
    url: &str,
    call: &'static str,
    operation: Option<String>,
) -> Result<Option<String>, BrokerError> {
    match operation {
        Some(op) if op.chars().count() > MAX_OPERATION_CHARS => Err(malformed(
            url,
            call,
            format!("operation is longer than {MAX_OPERATION_CHARS} characters"),
        )),
        Some(op) if op.is_empty() => Ok(None),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::StatusCode;

    use super::*;

    const URL: &str = "http://broker.test";

    fn answer(status: u16, body: &str) -> Exchange {
        Exchange::Answered(Answer {
            status: StatusCode::from_u16(status).expect("valid status"),
            retry_after: None,
            body: Ok(body.as_bytes().to_vec()),
        })
    }

    fn answer_with_body_error(status: u16, error: BrokerError) -> Exchange {
        Exchange::Answered(Answer {
            status: StatusCode::from_u16(status).expect("valid status"),
            retry_after: None,
            body: Err(error),
        })
    }

    fn timeout() -> BrokerError {
        BrokerError::Timeout {
            url: URL.into(),
            call: "provision",
            after: Duration::from_secs(1),
        }
    }

    fn too_large() -> BrokerError {
        BrokerError::TooLarge {
            url: URL.into(),
            call: "provision",
            limit: 10,
        }
    }

    /// What kind of result, for the table.
    fn kind<T>(result: &Result<T, BrokerError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(BrokerError::Timeout { .. }) => "timeout",
            Err(BrokerError::Unreachable { .. }) => "unreachable",
            Err(BrokerError::Rejected { .. }) => "rejected",
            Err(BrokerError::Malformed { .. }) => "malformed",
            Err(BrokerError::TooLarge { .. }) => "too large",
            Err(BrokerError::Client(_)) => "client",
        }
    }

    #[test]
    fn provision_and_bind_follow_the_orphan_mitigation_table() {
        type Make = fn() -> Exchange;
        // (case, exchange, result kind, orphan mitigation)
        let cases: Vec<(&str, Make, &str, bool)> = vec![
            ("200", || answer(200, "{}"), "ok", false),
            ("200 empty body", || answer(200, ""), "ok", false),
            ("200 malformed", || answer(200, "{oops"), "malformed", false),
            (
                "201",
                || answer(201, r#"{"dashboard_url":"http://d"}"#),
                "ok",
                false,
            ),
            ("201 malformed", || answer(201, "{oops"), "malformed", true),
            ("201 not an object", || answer(201, "[]"), "malformed", true),
            (
                "201 too large",
                || answer_with_body_error(201, too_large()),
                "too large",
                true,
            ),
            (
                "200 too large",
                || answer_with_body_error(200, too_large()),
                "too large",
                false,
            ),
            (
                "201 body timeout",
                || answer_with_body_error(201, timeout()),
                "timeout",
                true,
            ),
            ("202", || answer(202, r#"{"operation":"op"}"#), "ok", false),
            ("202 malformed", || answer(202, "nope"), "malformed", false),
            ("204", || answer(204, ""), "malformed", true),
            ("206", || answer(206, "{}"), "malformed", true),
            (
                "400",
                || answer(400, r#"{"description":"bad"}"#),
                "rejected",
                false,
            ),
            ("408", || answer(408, ""), "rejected", false),
            ("409", || answer(409, "{}"), "rejected", false),
            (
                "422",
                || answer(422, r#"{"error":"AsyncRequired"}"#),
                "rejected",
                false,
            ),
            ("500", || answer(500, "boom"), "rejected", true),
            ("503", || answer(503, ""), "rejected", true),
            (
                "500 body timeout",
                || answer_with_body_error(500, timeout()),
                "rejected",
                true,
            ),
            ("302", || answer(302, ""), "rejected", false),
            (
                "timeout",
                || Exchange::NoAnswer {
                    error: timeout(),
                    may_have_arrived: true,
                },
                "timeout",
                true,
            ),
            (
                "connection refused",
                || Exchange::NoAnswer {
                    error: BrokerError::Unreachable {
                        url: URL.into(),
                        call: "provision",
                        reason: "refused".into(),
                    },
                    may_have_arrived: false,
                },
                "unreachable",
                false,
            ),
        ];
        for (case, make, want_kind, want_mitigation) in cases {
            let outcome = provision(URL, make());
            assert_eq!(kind(&outcome.result), want_kind, "provision {case}");
            assert_eq!(
                outcome.orphan_mitigation, want_mitigation,
                "provision {case}"
            );
            let outcome = bind(URL, make());
            assert_eq!(kind(&outcome.result), want_kind, "bind {case}");
            assert_eq!(outcome.orphan_mitigation, want_mitigation, "bind {case}");
        }
    }

    #[test]
    fn provision_answers_become_the_right_variant() {
        let outcome = provision(
            URL,
            answer(
                202,
                r#"{"operation":"task_10","dashboard_url":"http://d/1"}"#,
            ),
        );
        assert_eq!(
            outcome.result.expect("202 is fine"),
            Provisioned::InProgress {
                operation: Some("task_10".into()),
                dashboard_url: Some("http://d/1".into()),
            }
        );
        let outcome = provision(URL, answer(201, r#"{"dashboard_url":null,"x-ext":1}"#));
        assert_eq!(
            outcome.result.expect("201 is fine"),
            Provisioned::Done {
                dashboard_url: None
            }
        );
        let outcome = provision(URL, answer(202, r#"{"operation":""}"#));
        assert_eq!(
            outcome.result.expect("empty op is absent"),
            Provisioned::InProgress {
                operation: None,
                dashboard_url: None
            }
        );
        let long = format!(r#"{{"operation":"{}"}}"#, "x".repeat(10_001));
        let outcome = provision(URL, answer(202, &long));
        assert_eq!(kind(&outcome.result), "malformed");
        let outcome = provision(URL, answer(201, r#"{"dashboard_url":5}"#));
        assert_eq!(kind(&outcome.result), "malformed");
        assert!(outcome.orphan_mitigation);
    }

    #[test]
    fn bind_reads_credentials_and_rejects_bad_shapes() {
        let outcome = bind(
            URL,
            answer(
                201,
                r#"{"credentials":{"uri":"pg://u:p@h/db"},"syslog_drain_url":"syslog://l:1"}"#,
            ),
        );
        let Bound::Done(details) = outcome.result.expect("201 is fine") else {
            panic!("expected Done");
        };
        assert_eq!(details.credentials["uri"], "pg://u:p@h/db");
        assert_eq!(details.syslog_drain_url.as_deref(), Some("syslog://l:1"));
        let outcome = bind(URL, answer(201, r#"{"credentials":"secret"}"#));
        assert_eq!(kind(&outcome.result), "malformed");
        assert!(outcome.orphan_mitigation);
    }

    #[test]
    fn errors_carry_the_osb_code_and_description() {
        let cases = [
            (
                answer(
                    422,
                    r#"{"error":"AsyncRequired","description":"needs async"}"#,
                ),
                422,
                Some("AsyncRequired"),
                "needs async",
            ),
            (
                answer(422, r#"{"error":"MaintenanceInfoConflict"}"#),
                422,
                Some("MaintenanceInfoConflict"),
                "Unprocessable Entity",
            ),
            (answer(409, "{}"), 409, None, "Conflict"),
            (
                answer(500, "<html>boom</html>"),
                500,
                None,
                "<html>boom</html>",
            ),
            (
                answer(500, r#"{"message":"x"}"#),
                500,
                None,
                r#"{"message":"x"}"#,
            ),
            (answer(503, ""), 503, None, "Service Unavailable"),
        ];
        for (exchange, want_status, want_error, want_description) in cases {
            match update(URL, exchange) {
                Err(BrokerError::Rejected {
                    url,
                    call,
                    status,
                    error,
                    description,
                }) => {
                    assert_eq!(url, URL);
                    assert_eq!(call, "update");
                    assert_eq!(status, want_status);
                    assert_eq!(error.as_deref(), want_error);
                    assert_eq!(description, want_description);
                }
                other => panic!("{want_status}: {other:?}"),
            }
        }
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let body = "e".repeat(5000);
        let Err(BrokerError::Rejected { description, .. }) = update(URL, answer(500, &body)) else {
            panic!("expected Rejected");
        };
        assert_eq!(description.chars().count(), SUMMARY_CHARS + 1);
    }

    #[test]
    fn update_answers() {
        assert_eq!(
            update(URL, answer(200, r#"{"dashboard_url":"http://d"}"#)).expect("200"),
            Updated::Done {
                dashboard_url: Some("http://d".into())
            }
        );
        assert_eq!(
            update(URL, answer(202, r#"{"operation":"up"}"#)).expect("202"),
            Updated::InProgress {
                operation: Some("up".into())
            }
        );
        assert_eq!(kind(&update(URL, answer(201, "{}"))), "malformed");
    }

    #[test]
    fn deletes_treat_gone_as_done() {
        assert_eq!(
            deprovision(URL, answer(200, "{}")).expect("200"),
            Deprovisioned::Done
        );
        assert_eq!(
            deprovision(URL, answer(410, "")).expect("410"),
            Deprovisioned::Done
        );
        assert_eq!(
            deprovision(URL, answer(200, "garbage")).expect("200"),
            Deprovisioned::Done
        );
        assert_eq!(
            deprovision(URL, answer(202, r#"{"operation":"del"}"#)).expect("202"),
            Deprovisioned::InProgress {
                operation: Some("del".into())
            }
        );
        assert_eq!(kind(&deprovision(URL, answer(500, ""))), "rejected");
        assert_eq!(kind(&deprovision(URL, answer(204, ""))), "malformed");
        assert_eq!(unbind(URL, answer(410, "{}")).expect("410"), Unbound::Done);
        assert_eq!(
            unbind(URL, answer(202, "")).expect("202"),
            Unbound::InProgress { operation: None }
        );
    }

    #[test]
    fn last_operation_states_retry_after_and_gone() {
        let exchange = Exchange::Answered(Answer {
            status: StatusCode::OK,
            retry_after: Some(Duration::from_secs(7)),
            body: Ok(br#"{"state":"in progress","description":"10%"}"#.to_vec()),
        });
        assert_eq!(
            last_operation(URL, "last_operation", OperationKind::Create, exchange).expect("200"),
            LastOperation {
                state: OperationState::InProgress,
                description: Some("10%".into()),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        for (body, state) in [
            (r#"{"state":"succeeded"}"#, OperationState::Succeeded),
            (
                r#"{"state":"failed","description":""}"#,
                OperationState::Failed,
            ),
        ] {
            let op = last_operation(
                URL,
                "last_operation",
                OperationKind::Update,
                answer(200, body),
            )
            .expect("200");
            assert_eq!(op.state, state);
            assert_eq!(op.description, None);
        }
        for body in [r#"{"state":"done"}"#, "{}", "", "[1]"] {
            let result = last_operation(
                URL,
                "last_operation",
                OperationKind::Create,
                answer(200, body),
            );
            assert_eq!(kind(&result), "malformed", "{body:?}");
        }
        let gone = last_operation(
            URL,
            "last_operation",
            OperationKind::Delete,
            answer(410, "{}"),
        );
        assert_eq!(
            gone.expect("410 on delete").state,
            OperationState::Succeeded
        );
        let gone = last_operation(
            URL,
            "last_operation",
            OperationKind::Create,
            answer(410, "{}"),
        );
        assert_eq!(kind(&gone), "rejected");
    }

    #[test]
    fn catalog_must_be_valid_json_and_valid_content() {
        let good = r#"{"services":[{"id":"o","name":"db","description":"d","bindable":true,
            "plans":[{"id":"p","name":"small","description":"s"}]}]}"#;
        let catalog = super::catalog(URL, answer(200, good)).expect("valid");
        assert_eq!(catalog.services[0].plans[0].id, "p");
        for (body, reason_part) in [
            ("{not json", "not JSON"),
            ("", "not JSON"),
            (r#"{"services":[{"id":"o"}]}"#, "missing field"),
            (
                r#"{"services":[{"id":"o","name":"db","description":"d","bindable":true,"plans":[]}]}"#,
                "has no plans",
            ),
        ] {
            match super::catalog(URL, answer(200, body)) {
                Err(BrokerError::Malformed { url, call, reason }) => {
                    assert_eq!((url.as_str(), call), (URL, "catalog"));
                    assert!(reason.contains(reason_part), "{body}: {reason}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(kind(&super::catalog(URL, answer(401, ""))), "rejected");
    }
}
