//! The README names every value of the metric labels whose sets are fixed in code, so an
//! operator reading it can write alerts and dashboards against all of them.

/// The README's `## Metrics` section.
fn metrics_section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("\n## Metrics").expect("a Metrics section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 1 + i);
    readme[start..end].to_owned()
}

/// The labels of `values` the README's metrics section does not name in backticks.
fn unnamed<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let section = metrics_section();
    values
        .into_iter()
        .filter(|v| !section.contains(&format!("`{v}`")))
        .collect()
}

#[test]
fn every_token_refusal_reason_is_named() {
    assert_eq!(
        unnamed(crate::front::token::token_reasons()),
        Vec::<&str>::new()
    );
}

#[test]
fn every_session_end_reason_is_named() {
    assert_eq!(unnamed(crate::session::END_REASONS), Vec::<&str>::new());
}

#[test]
fn every_dns_and_control_plane_outcome_is_named() {
    assert_eq!(unnamed(crate::metrics::DNS_OUTCOMES), Vec::<&str>::new());
    assert_eq!(
        unnamed(crate::metrics::CONTROL_PLANE_OUTCOMES),
        Vec::<&str>::new()
    );
}
