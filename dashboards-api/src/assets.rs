//! Static files embedded in the binary: the page, its script and style, and the
//! vendored DSFR (`@gouvfr/dsfr` 1.15.3, licence etalab-2.0) and Chart.js (4.6.1, MIT)
//! from the npm registry. `assets/vendor/README.md` says how they were taken.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "assets/"]
struct Assets;

/// The shell every page of the web UI shares (header, navigation, footer).
pub fn shell_html() -> String {
    text("app/shell.html")
}

/// The static body of a page (`assets/app/pages/<id>.html`).
pub fn page_body(id: &str) -> String {
    text(&format!("app/pages/{id}.html"))
}

fn text(path: &str) -> String {
    Assets::get(path)
        .map(|f| String::from_utf8_lossy(&f.data).into_owned())
        .unwrap_or_else(|| format!("fichier {path} absent du binaire"))
}

pub async fn serve(Path(path): Path<String>) -> Response {
    match Assets::get(&path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            let mut response = file.data.into_owned().into_response();
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&mime) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            response
        }
        None => (StatusCode::NOT_FOUND, "fichier introuvable").into_response(),
    }
}
