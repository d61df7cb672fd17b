//! A small server-sent-events parser: bytes in (as they arrive, split anywhere), complete
//! messages out. It handles what `GET /api/v1/events` sends: `event:` and `data:` fields,
//! `:` comments (the `connected` greeting and keep-alives), `\n` or `\r\n` line ends; `id:`
//! and `retry:` are ignored.

/// One dispatched message: its `event:` name (`message` when absent) and its `data:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub event: String,
    pub data: String,
}

/// Longest line kept while waiting for its end; a longer one is a broken stream.
const MAX_LINE: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the messages they complete. Errors on a line longer than 4 MiB.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Message>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(m) = self.line_done(&String::from_utf8_lossy(&line)) {
                    out.push(m);
                }
            } else {
                if self.line.len() >= MAX_LINE {
                    return Err("the event stream sent a line longer than 4 MiB".into());
                }
                self.line.push(b);
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &str) -> Option<Message> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            return data.map(|data| Message {
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere_come_out_whole() {
        let stream = b": connected\n\nevent: rollout_updated\r\ndata: {\"id\":\"r-1\"}\r\n\r\n: ka\n\nevent: resync\ndata: {\"missed\":3}\n\ndata: a\ndata: b\n\n";
        let expected = vec![
            Message {
                event: "rollout_updated".into(),
                data: "{\"id\":\"r-1\"}".into(),
            },
            Message {
                event: "resync".into(),
                data: "{\"missed\":3}".into(),
            },
            Message {
                event: "message".into(),
                data: "a\nb".into(),
            },
        ];
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut p = Parser::new();
            let got: Vec<Message> = stream
                .chunks(chunk)
                .flat_map(|c| p.feed(c).unwrap())
                .collect();
            assert_eq!(got, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let mut p = Parser::new();
        assert!(p.feed(b"event: x\n\n").unwrap().is_empty());
    }
}
