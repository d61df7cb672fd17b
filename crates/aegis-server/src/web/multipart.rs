//! Just enough `multipart/form-data` for `POST /api/v1/firmware` from an HTML form or
//! `curl -F`: the first part with a file name (or named `file`) is the image; optional text
//! parts `notes` and `filename` fill in those fields. The body is already in memory (read under
//! the upload limit), so this only slices it.

use bytes::Bytes;

use crate::{Error, Result};

/// The parts of an upload form the API uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadForm {
    pub file: Bytes,
    pub filename: Option<String>,
    pub notes: Option<String>,
}

/// The boundary, if `content_type` is `multipart/form-data`.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits the form and picks out the file, its name and the notes.
pub fn parse(body: &Bytes, boundary: &str) -> Result<UploadForm> {
    let bad = |what: &str| {
        Error::bad_request(
            "bad_multipart",
            format!(
                "the multipart upload is malformed ({what}); send the raw .bin as application/octet-stream instead"
            ),
        )
    };
    let delimiter = format!("--{boundary}");
    let delim = delimiter.as_bytes();
    let mut pos = find(body, delim, 0).ok_or_else(|| bad("no boundary"))? + delim.len();
    let mut form = UploadForm {
        file: Bytes::new(),
        filename: None,
        notes: None,
    };
    let mut have_file = false;
    let closing = format!("\r\n{delimiter}");
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        let start = pos + 2; // the CRLF after the delimiter
        let header_end = find(body, b"\r\n\r\n", start).ok_or_else(|| bad("part headers"))?;
        let headers = String::from_utf8_lossy(&body[start.min(header_end)..header_end]);
        let content = header_end + 4;
        let end =
            find(body, closing.as_bytes(), content).ok_or_else(|| bad("no closing boundary"))?;
        let (name, filename) = disposition(&headers);
        let data = body.slice(content..end);
        if !have_file && (filename.is_some() || name.as_deref() == Some("file")) {
            form.file = data;
            form.filename = filename.filter(|f| !f.is_empty());
            have_file = true;
        } else if name.as_deref() == Some("notes") {
            form.notes = Some(String::from_utf8_lossy(&data).into_owned());
        } else if name.as_deref() == Some("filename") && form.filename.is_none() {
            form.filename = Some(String::from_utf8_lossy(&data).into_owned());
        }
        pos = end + closing.len();
        if pos + 2 > body.len() {
            return Err(bad("truncated"));
        }
    }
    if !have_file {
        return Err(bad("no file part"));
    }
    Ok(form)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// `name` and `filename` of a part's `Content-Disposition`.
fn disposition(headers: &str) -> (Option<String>, Option<String>) {
    let Some(line) = headers.lines().find(|l| {
        l.split(':')
            .next()
            .is_some_and(|h| h.trim().eq_ignore_ascii_case("content-disposition"))
    }) else {
        return (None, None);
    };
    let mut name = None;
    let mut filename = None;
    for param in line.split(';').skip(1) {
        if let Some((k, v)) = param.trim().split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "name" => name = Some(v),
                "filename" => filename = Some(v),
                _ => {}
            }
        }
    }
    (name, filename)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_curl_style_form() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nfixes the LED\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"app.bin\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n\xe9\x03\r\n\x00--X\r\n--XyZ--\r\n",
        );
        let b = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let form = parse(&body, &b).unwrap();
        assert_eq!(&form.file[..], b"\xe9\x03\r\n\x00--X");
        assert_eq!(form.filename.as_deref(), Some("app.bin"));
        assert_eq!(form.notes.as_deref(), Some("fixes the LED"));
    }

    #[test]
    fn refuses_forms_without_a_file_and_other_types() {
        assert_eq!(boundary("application/octet-stream"), None);
        let body = Bytes::from_static(
            b"--B\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nx\r\n--B--\r\n",
        );
        assert_eq!(parse(&body, "B").unwrap_err().code, "bad_multipart");
        assert_eq!(
            parse(&Bytes::from_static(b"garbage"), "B")
                .unwrap_err()
                .code,
            "bad_multipart"
        );
        let truncated =
            Bytes::from_static(b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc");
        assert!(parse(&truncated, "B").is_err());
    }
}
