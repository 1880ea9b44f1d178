// Chat: the person's rooms with unread counts, a conversation with live messages, typing
// indicator and read receipts. Messages are sent over REST (the answer names any error);
// everything live arrives over MQTT (`chat/{room}/messages|typing|read`), and typing is
// published there.

import { call, client, type S } from "../api";
import { fill, fmtTime, h, randomId } from "../dom";
import { publish, topics, watch } from "../live";
import type { View } from "../main";
import type { Me } from "../session";

type Room = S["RoomOut"];
type Message = S["MessageOut"];

export const chatView: View = async (root, me, params) => {
  const list = h("ul", { class: "rooms", "data-role": "rooms" });
  const pane = h("div", { class: "conversation" }, h("p", { class: "muted" }, "Choose a conversation."));
  const error = h("p", { class: "error", role: "alert" });
  fill(root, h("div", { class: "toolbar" }, h("h1", null, "Chat")), error, h("div", { class: "chat" }, h("div", null, list, newRoom(me, error)), pane));
  const page = await call("rooms", () => client.GET("/api/chat/rooms", { params: { query: { limit: 100 } } }));
  const rooms = new Map(page.items.map((r) => [r.id, r]));
  const hosp = me.user.hospitalId;
  let open: Conversation | null = null;

  const drawList = () =>
    fill(
      list,
      [...rooms.values()].map((r) =>
        h(
          "li",
          { class: r.id === open?.room.id ? "active" : "" },
          h(
            "a",
            { href: `#/chat/${r.id}`, "data-room": r.id },
            h("span", null, title(r, me)),
            r.unreadCount > 0 && h("span", { class: "unread", "data-role": "unread" }, String(r.unreadCount)),
          ),
        ),
      ),
    );

  const stops = [...rooms.keys()].flatMap((id) => {
    const base = topics.room(hosp, id);
    return [
      watch(`${base}/messages`, (_t, p) => {
        const m = (p as { message: Message }).message;
        const r = rooms.get(id);
        if (!r) return;
        r.lastMessage = m;
        if (open?.room.id === id) open.add(m);
        else if (m.senderId !== me.user.id) r.unreadCount += 1;
        drawList();
      }),
      watch(`${base}/typing`, (_t, p) => open?.room.id === id && open.typing(p as Typing)),
      watch(`${base}/read`, (_t, p) => open?.room.id === id && open.read(p as Receipt)),
    ];
  });

  const roomId = params[0];
  if (roomId && rooms.has(roomId)) {
    const room = rooms.get(roomId)!;
    open = new Conversation(room, me, error);
    room.unreadCount = 0;
    fill(pane, open.el);
    await open.load();
  }
  drawList();
  return () => {
    stops.forEach((f) => f());
    open?.close();
  };
};

function title(r: Room, me: Me): string {
  const others = r.participants.filter((p) => p.userId !== me.user.id).map((p) => p.name);
  return `${others.join(", ") || "Only you"}${r.type === "doctor-technician" ? " (machine room)" : ""}`;
}

interface Typing {
  userId: string;
  typing: boolean;
  expiresAt: string;
}
interface Receipt {
  userId: string;
  lastReadMessageId: string;
}

class Conversation {
  readonly el: HTMLElement;
  private messages: Message[] = [];
  private list = h("ol", { class: "messages", "data-role": "messages" });
  private typingLine = h("p", { class: "typing muted", "data-role": "typing" });
  private typingUntil = 0;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  private lastTypingSent = 0;
  private names: Map<string, string>;

  constructor(
    readonly room: Room,
    private me: Me,
    private error: HTMLElement,
  ) {
    this.names = new Map(room.participants.map((p) => [p.userId, p.name]));
    const input = h("textarea", { rows: 2, maxlength: 4000, "aria-label": "Message", "data-role": "compose", placeholder: "Write a message…" });
    const send = h("button", { type: "submit" }, "Send");
    const form = h("form", { class: "compose" }, input, send);
    input.addEventListener("input", () => this.sendTyping(true));
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      send.disabled = true;
      this.error.textContent = "";
      call("send", () =>
        client.POST("/api/chat/rooms/{roomId}/messages", {
          params: { path: { roomId: room.id } },
          body: { message: text, clientMessageId: randomId("web-") },
        }),
      )
        .then((m) => {
          input.value = "";
          this.add(m);
          this.sendTyping(false);
        })
        .catch((err: Error) => (this.error.textContent = err.message))
        .finally(() => (send.disabled = false));
    });
    this.el = h("div", { class: "conversation-inner", "data-room": room.id }, this.list, this.typingLine, form);
  }

  async load(): Promise<void> {
    const page = await call("messages", () =>
      client.GET("/api/chat/rooms/{roomId}/messages", { params: { path: { roomId: this.room.id }, query: { limit: 50 } } }),
    );
    this.messages = page.items;
    this.draw();
    this.markRead();
  }

  add(m: Message): void {
    const i = this.messages.findIndex((x) => x.id === m.id);
    if (i >= 0) this.messages[i] = m;
    else this.messages.push(m);
    this.messages.sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.id.localeCompare(b.id));
    if (m.senderId !== this.me.user.id) this.typingUntil = 0;
    this.draw();
    this.markRead();
  }

  typing(t: Typing): void {
    if (t.userId === this.me.user.id) return;
    this.typingUntil = t.typing ? Date.parse(t.expiresAt) : 0;
    const who = this.names.get(t.userId) ?? "Someone";
    this.typingLine.textContent = t.typing ? `${who} is typing…` : "";
    clearTimeout(this.typingTimer);
    if (t.typing) {
      this.typingTimer = setTimeout(() => {
        if (Date.now() >= this.typingUntil) this.typingLine.textContent = "";
      }, Math.max(0, this.typingUntil - Date.now()) + 50);
    }
  }

  read(r: Receipt): void {
    if (r.userId === this.me.user.id) return;
    const upTo = this.messages.findIndex((m) => m.id === r.lastReadMessageId);
    this.messages.forEach((m, i) => {
      if (i <= upTo && m.senderId === this.me.user.id) m.isRead = true;
    });
    this.draw();
  }

  close(): void {
    this.sendTyping(false);
    clearTimeout(this.typingTimer);
  }

  private sendTyping(typing: boolean): void {
    const now = Date.now();
    if (typing && now - this.lastTypingSent < 2000) return;
    if (!typing && this.lastTypingSent === 0) return;
    this.lastTypingSent = typing ? now : 0;
    publish(`${topics.room(this.me.user.hospitalId, this.room.id)}/typing`, { v: 1, typing });
  }

  private markRead(): void {
    const last = [...this.messages].reverse().find((m) => m.senderId !== this.me.user.id);
    if (!last || last.readBy.some((r) => r.userId === this.me.user.id)) return;
    last.readBy.push({ userId: this.me.user.id, readAt: new Date().toISOString() });
    void call("read", () => client.PUT("/api/chat/messages/{messageId}/read", { params: { path: { messageId: last.id } } })).catch(
      (e: Error) => (this.error.textContent = e.message),
    );
  }

  private draw(): void {
    fill(
      this.list,
      this.messages.map((m) => {
        const mine = m.senderId === this.me.user.id;
        return h(
          "li",
          { class: mine ? "mine" : "theirs", "data-message": m.id },
          h("div", { class: "meta" }, mine ? "You" : this.names.get(m.senderId ?? "") ?? m.senderRole ?? "", " · ", fmtTime(m.timestamp)),
          h("div", { class: "text" }, m.message),
          mine && h("div", { class: "receipt", "data-role": "receipt" }, m.isRead ? "✓✓ Read" : "✓ Sent"),
        );
      }),
    );
    this.list.lastElementChild?.scrollIntoView({ block: "end" });
  }
}

/** Doctors open a conversation with one of their patients. */
function newRoom(me: Me, error: HTMLElement): HTMLElement | null {
  if (me.user.role !== "doctor") return null;
  const select = h("select", { "aria-label": "Patient" }, h("option", { value: "" }, "New conversation with…"));
  void call("patients", () => client.GET("/api/patients", { params: { query: { limit: 200 } } }))
    .then((page) => {
      for (const p of page.items) if (p.userId) select.appendChild(h("option", { value: p.userId }, p.name));
    })
    .catch(() => undefined);
  select.addEventListener("change", () => {
    if (!select.value) return;
    call("open room", () => client.POST("/api/chat/rooms", { body: { kind: "doctor-patient", counterpartId: select.value } }))
      .then((room) => {
        location.hash = `#/chat/${room.id}`;
      })
      .catch((e: Error) => (error.textContent = e.message));
  });
  return h("div", { class: "new-room" }, select);
}
