//! The web dashboard: `GET /` (the page) and `GET /assets/{id}` (its script, styles and the
//! vendored uPlot chart library with its licence), all embedded in the binary, so the
//! operator's browser needs nothing but the service. Both routes answer without the token
//! (`api::is_open`); the page asks for it once, keeps it in the tab's session storage and sends
//! it with every API call (`?access_token=` on the alarm stream, which `EventSource` opens).
//!
//! The page's asset URLs carry `?v=<hash of every asset>`, so a browser never mixes a new page
//! with a cached old script.

use std::sync::{Arc, OnceLock};

use crate::api::{bad, Answer, Req};
use crate::Service;

/// One embedded file: its name under `/assets/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset { name: "app.js", content_type: JS, bytes: include_bytes!("../assets/app.js") },
    Asset { name: "app.css", content_type: CSS, bytes: include_bytes!("../assets/app.css") },
    Asset { name: "uplot.iife.min.js", content_type: JS, bytes: include_bytes!("../assets/uplot.iife.min.js") },
    Asset { name: "uplot.min.css", content_type: CSS, bytes: include_bytes!("../assets/uplot.min.css") },
    Asset { name: "LICENSE-uPlot", content_type: TEXT, bytes: include_bytes!("../assets/LICENSE-uPlot") },
];

const INDEX: &str = include_str!("../assets/index.html");

/// FNV-1a (64 bits) of every asset: the `?v=` of the page's asset URLs.
fn assets_version() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in ASSETS {
        for &b in a.name.as_bytes().iter().chain(a.bytes) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The page with its asset version filled in (computed once).
fn index_html() -> &'static [u8] {
    static PAGE: OnceLock<Vec<u8>> = OnceLock::new();
    PAGE.get_or_init(|| INDEX.replace("{{v}}", &assets_version()).into_bytes())
}

/// `GET /`: the dashboard page.
pub(crate) fn get_index(_: &Arc<Service>, _: &mut Req) -> Answer {
    Answer { status: 200, content_type: "text/html; charset=utf-8", body: index_html().to_vec() }
}

/// `GET /assets/{id}`: one embedded asset, 404 for any other name.
pub(crate) fn get_asset(_: &Arc<Service>, r: &mut Req) -> Answer {
    let name = r.params.first().map(String::as_str).unwrap_or_default();
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => Answer { status: 200, content_type: a.content_type, body: a.bytes.to_vec() },
        None => {
            let known: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
            bad(404, format!("no asset {name:?} (the dashboard's assets: {})", known.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_embedded_assets_with_their_version() {
        let page = String::from_utf8(index_html().to_vec()).unwrap();
        assert!(!page.contains("{{v}}"));
        let v = assets_version();
        let mut linked = 0;
        for part in page.split("/assets/").skip(1) {
            let name = part.split(['?', '"']).next().unwrap();
            assert!(ASSETS.iter().any(|a| a.name == name), "the page links {name}, which is not embedded");
            assert!(part.starts_with(&format!("{name}?v={v}\"")), "{name} without ?v={v}");
            linked += 1;
        }
        assert_eq!(linked, 4, "app.js, app.css, uPlot's script and styles");
        // Nothing from the network: no absolute URLs in the page or the script.
        for text in [page.as_str(), std::str::from_utf8(ASSETS[0].bytes).unwrap()] {
            assert!(!text.contains("http://") && !text.contains("https://"), "an external URL");
        }
    }

    #[test]
    fn assets_have_their_content_types_and_names_are_route_safe() {
        for a in ASSETS {
            let want = if a.name.ends_with(".js") {
                JS
            } else if a.name.ends_with(".css") {
                CSS
            } else {
                TEXT
            };
            assert_eq!(a.content_type, want, "{}", a.name);
            assert!(!a.bytes.is_empty(), "{}", a.name);
            assert!(crate::api::valid_id(a.name).is_ok(), "{} cannot match /assets/{{id}}", a.name);
        }
    }
}
