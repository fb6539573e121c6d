//! The stylesheet and the one small script, embedded in the binary and served under names
//! that carry a hash of their content, so browsers may cache them for a year and still get
//! a new version the moment it changes.

use actix_web::{web, HttpResponse};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../static/herald.css");
const JS: &str = include_str!("../../static/herald.js");

/// The assets' current names.
#[derive(Debug, Clone)]
pub struct Assets {
    css_name: String,
    js_name: String,
}

fn hashed(stem: &str, ext: &str, content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}.{hex}.{ext}")
}

impl Default for Assets {
    fn default() -> Self {
        Assets {
            css_name: hashed("herald", "css", CSS),
            js_name: hashed("herald", "js", JS),
        }
    }
}

impl Assets {
    pub fn css_url(&self) -> String {
        format!("/ui/static/{}", self.css_name)
    }

    pub fn js_url(&self) -> String {
        format!("/ui/static/{}", self.js_name)
    }

    /// The asset called `name`, with its content type.
    fn get(&self, name: &str) -> Option<(&'static str, &'static str)> {
        if name == self.css_name {
            Some(("text/css; charset=utf-8", CSS))
        } else if name == self.js_name {
            Some(("text/javascript; charset=utf-8", JS))
        } else {
            None
        }
    }
}

/// `GET /ui/static/{name}`.
pub async fn serve(assets: web::Data<Assets>, name: web::Path<String>) -> HttpResponse {
    match assets.get(&name) {
        Some((content_type, body)) => HttpResponse::Ok()
            .content_type(content_type)
            .insert_header(("cache-control", "public, max-age=31536000, immutable"))
            .body(body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset (an old page? reload it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_content() {
        let a = Assets::default();
        assert!(a.css_url().starts_with("/ui/static/herald.") && a.css_url().ends_with(".css"));
        assert_ne!(hashed("herald", "css", "a"), hashed("herald", "css", "b"));
        let name = a.css_url().rsplit('/').next().unwrap().to_string();
        assert_eq!(
            a.get(&name).map(|(t, _)| t),
            Some("text/css; charset=utf-8")
        );
        assert!(a.get("herald.css").is_none());
    }
}
