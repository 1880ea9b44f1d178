//! The live WebSocket stream of a device's readings (`/ws/health-metrics/{device}`).

use std::net::SocketAddr;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::LONG_WAIT;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws/health-metrics/{device}`; the HTTP status when the upgrade is refused.
pub async fn ws_open(http: SocketAddr, device: Uuid, token: Option<&str>) -> Result<Ws, u16> {
    let mut url = format!("ws://{http}/ws/health-metrics/{device}");
    if let Some(t) = token {
        url.push_str(&format!("?token={t}"));
    }
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

#[derive(Debug)]
pub enum Live {
    Json(Value),
    /// Closed, with the close code if there was one.
    Closed(Option<u16>),
}

pub async fn ws_next(ws: &mut Ws) -> Live {
    loop {
        match tokio::time::timeout(LONG_WAIT, ws.next()).await.expect("a websocket message in time") {
            Some(Ok(Message::Text(t))) => return Live::Json(serde_json::from_str(t.as_str()).expect("JSON message")),
            Some(Ok(Message::Close(frame))) => return Live::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Live::Closed(None),
        }
    }
}

/// Reads the stream until the reading `seq` arrives: alert evaluation of that reading is
/// complete by then (the stream gets a batch only after the alert engine has seen it).
/// Returns the other messages seen on the way.
pub async fn ws_until_reading(ws: &mut Ws, seq: i64) -> (Value, Vec<Value>) {
    let mut others = Vec::new();
    loop {
        match ws_next(ws).await {
            Live::Json(m) if m["type"] == "reading" && m["seq"] == seq => return (m, others),
            Live::Json(m) => others.push(m),
            Live::Closed(code) => panic!("the stream closed ({code:?}) before reading {seq}"),
        }
    }
}
