// omnihub web chat: the chat itself, loaded by widget.js when the visitor opens it.
// Text is only ever set as text (textContent, links built as elements), never as HTML.
(() => {
  "use strict";
  const chat = window.omnihubChat;
  if (!chat || chat.toggle) return;
  const TEXT = {
    en: { title: "Chat", close: "Close the chat", message: "Your message", send: "Send",
      history: "Conversation", connecting: "Connecting…", reconnecting: "Connection lost, reconnecting…",
      refused: "The chat is not available on this page.", you: "You", agent: "Agent",
      tooLong: "This message is too long.", slowDown: "You are writing fast: the message goes out in a moment.", attach: "Attach an image or a PDF", fileRefused: "Only images and PDFs up to 5 MB can be sent.", failed: "Not sent yet, retrying…", typing: "{name} is typing…",
      offline: "No one is here right now. Leave your email address or phone number and we will answer there.", contact: "Email or phone (+…)", leave: "Leave it", saved: "If you have gone, we will answer at {address}.", badAddress: "That is neither an email address nor a phone number with its country code.", infected: "This file looks harmful; it was not sent.", account: "My account", notYet: "Write to us first, then open your account." },
    fr: { title: "Discussion", close: "Fermer la discussion", message: "Votre message", send: "Envoyer",
      history: "Conversation", connecting: "Connexion…", reconnecting: "Connexion perdue, reconnexion…",
      refused: "La discussion n'est pas disponible sur cette page.", you: "Vous", agent: "Conseiller",
      tooLong: "Ce message est trop long.", slowDown: "Vous écrivez vite : le message part dans un instant.", attach: "Joindre une image ou un PDF", fileRefused: "Seuls les images et les PDF de 5 Mo au plus peuvent être envoyés.", failed: "Pas encore envoyé, nouvel essai…", typing: "{name} est en train d'écrire…",
      offline: "Personne n'est disponible pour le moment. Laissez votre adresse e-mail ou votre numéro de téléphone et nous vous répondrons là.", contact: "E-mail ou téléphone (+…)", leave: "Laisser", saved: "Si vous êtes parti, nous répondrons à {address}.", badAddress: "Ce n'est ni une adresse e-mail ni un numéro de téléphone avec son indicatif.", infected: "Ce fichier semble dangereux ; il n'a pas été envoyé.", account: "Mon compte", notYet: "Écrivez-nous d'abord, puis ouvrez votre compte." },
    de: { title: "Chat", close: "Chat schließen", message: "Ihre Nachricht", send: "Senden",
      history: "Unterhaltung", connecting: "Verbinde…", reconnecting: "Verbindung verloren, verbinde neu…",
      refused: "Der Chat ist auf dieser Seite nicht verfügbar.", you: "Sie", agent: "Berater",
      tooLong: "Diese Nachricht ist zu lang.", slowDown: "Sie schreiben schnell: die Nachricht geht gleich hinaus.", attach: "Bild oder PDF anhängen", fileRefused: "Nur Bilder und PDFs bis 5 MB können gesendet werden.", failed: "Noch nicht gesendet, neuer Versuch…", typing: "{name} schreibt…",
      offline: "Gerade ist niemand da. Hinterlassen Sie Ihre E-Mail-Adresse oder Telefonnummer, wir antworten dort.", contact: "E-Mail oder Telefon (+…)", leave: "Hinterlassen", saved: "Wenn Sie gegangen sind, antworten wir an {address}.", badAddress: "Das ist weder eine E-Mail-Adresse noch eine Telefonnummer mit Ländervorwahl.", infected: "Diese Datei scheint schädlich; sie wurde nicht gesendet.", account: "Mein Konto", notYet: "Schreiben Sie uns zuerst, dann öffnen Sie Ihr Konto." },
    es: { title: "Chat", close: "Cerrar el chat", message: "Su mensaje", send: "Enviar",
      history: "Conversación", connecting: "Conectando…", reconnecting: "Conexión perdida, reconectando…",
      refused: "El chat no está disponible en esta página.", you: "Usted", agent: "Agente",
      tooLong: "Este mensaje es demasiado largo.", slowDown: "Escribe rápido: el mensaje sale en un momento.", attach: "Adjuntar una imagen o un PDF", fileRefused: "Solo se pueden enviar imágenes y PDF de hasta 5 MB.", failed: "Aún no enviado, reintentando…", typing: "{name} está escribiendo…",
      offline: "Ahora no hay nadie disponible. Deje su correo electrónico o su teléfono y le responderemos allí.", contact: "Correo o teléfono (+…)", leave: "Dejarlo", saved: "Si se ha ido, le responderemos en {address}.", badAddress: "No es un correo electrónico ni un teléfono con su prefijo internacional.", infected: "Este archivo parece dañino; no se ha enviado.", account: "Mi cuenta", notYet: "Escríbanos primero y luego abra su cuenta." },
    pt: { title: "Conversa", close: "Fechar a conversa", message: "A sua mensagem", send: "Enviar",
      history: "Conversa", connecting: "A ligar…", reconnecting: "Ligação perdida, a religar…",
      refused: "A conversa não está disponível nesta página.", you: "Você", agent: "Assistente",
      tooLong: "Esta mensagem é demasiado longa.", slowDown: "Está a escrever depressa: a mensagem segue dentro de momentos.", attach: "Anexar uma imagem ou um PDF", fileRefused: "Só se podem enviar imagens e PDF até 5 MB.", failed: "Ainda não enviada, a tentar de novo…", typing: "{name} está a escrever…",
      offline: "Neste momento não está ninguém. Deixe o seu e-mail ou telefone e responderemos por lá.", contact: "E-mail ou telefone (+…)", leave: "Deixar", saved: "Se já tiver saído, respondemos para {address}.", badAddress: "Não é um e-mail nem um telefone com o indicativo do país.", infected: "Este ficheiro parece perigoso; não foi enviado.", account: "A minha conta", notYet: "Escreva-nos primeiro e depois abra a sua conta." },
    ru: { title: "Чат", close: "Закрыть чат", message: "Ваше сообщение", send: "Отправить",
      history: "Переписка", connecting: "Подключение…", reconnecting: "Связь потеряна, переподключение…",
      refused: "Чат недоступен на этой странице.", you: "Вы", agent: "Оператор",
      tooLong: "Сообщение слишком длинное.", slowDown: "Вы пишете быстро: сообщение уйдёт через мгновение.", attach: "Прикрепить изображение или PDF", fileRefused: "Можно отправлять только изображения и PDF до 5 МБ.", failed: "Ещё не отправлено, повтор…", typing: "{name} печатает…",
      offline: "Сейчас никого нет на месте. Оставьте email или номер телефона, и мы ответим туда.", contact: "Email или телефон (+…)", leave: "Оставить", saved: "Если вы уйдёте, мы ответим на {address}.", badAddress: "Это не email и не номер телефона с кодом страны.", infected: "Этот файл похож на вредоносный; он не отправлен.", account: "Мой аккаунт", notYet: "Сначала напишите нам, затем откройте аккаунт." },
  };
  const t = TEXT[chat.lang] || TEXT.en;
  const KEY = `omnihub-chat:${chat.site}`;
  const KEPT = 200;
  const REFUSED = new Set([4400, 4401, 4403]);
  const read = (store) => { try { return JSON.parse(store.getItem(KEY)) || null; } catch { return null; } };
  const write = (store, value) => { try { store.setItem(KEY, JSON.stringify(value)); } catch { /* full or blocked */ } };
  // the visitor's id outlives the tab; what this tab showed (for a reload) lives with the tab
  const visitor = read(localStorage) || {};
  const tab = read(sessionStorage) || { seq: 0, entries: [], pending: [] };
  const mine = new Map(); // client id -> the visitor's message's element
  const shown = new Set(); // entry numbers on screen
  const files = new Map(); // client id -> the file the visitor sent
  let socket = null;
  let delay = 1000;
  let refused = false;

  const CSS = `
    :host { all: initial; }
    .panel { position: fixed; right: 20px; bottom: 88px; width: min(360px, calc(100vw - 40px));
      height: min(520px, calc(100vh - 120px)); display: flex; flex-direction: column;
      background: #fff; color: #1b1f24; border-radius: 12px; box-shadow: 0 4px 24px rgba(0,0,0,.25);
      font: 15px/1.4 system-ui, sans-serif; z-index: 2147483647; overflow: hidden; }
    .panel[hidden] { display: none; }
    header { display: flex; align-items: center; justify-content: space-between; padding: 10px 14px;
      background: var(--accent, #1f6feb); color: #fff; }
    h2 { font-size: 16px; margin: 0; }
    .account { background: none; border: 1px solid currentColor; color: inherit; border-radius: 6px;
      font: inherit; font-size: 13px; padding: 2px 8px; cursor: pointer; margin-right: 6px; }
    .account[hidden] { display: none; }
    .close { background: none; border: none; color: inherit; font-size: 22px; cursor: pointer; }
    .status { margin: 0; padding: 4px 14px; font-size: 13px; color: #57606a; min-height: 1em; }
    .offline { margin: 0; padding: 8px 14px; font-size: 13px; background: #fff8c5; border-bottom: 1px solid #d4a72c; }
    .offline[hidden], .offline form[hidden] { display: none; }
    .offline form { padding: 6px 0 0; border: none; }
    .offline input { flex: 1; font: inherit; padding: 4px 6px; border: 1px solid #8c959f; border-radius: 6px; }
    .typing { margin: 0; padding: 2px 14px; font-size: 13px; font-style: italic; color: #57606a; min-height: 1.2em; }
    ol { list-style: none; margin: 0; padding: 10px 14px; overflow-y: auto; flex: 1; }
    li { margin: 6px 0; max-width: 85%; padding: 8px 10px; border-radius: 10px; white-space: pre-wrap;
      overflow-wrap: anywhere; }
    li.in { margin-left: auto; background: var(--accent, #1f6feb); color: #fff; }
    li.out { background: #eef1f4; }
    li.in a { color: #fff; }
    li.waiting { opacity: .6; }
    .author { display: block; font-size: 12px; opacity: .8; }
    form { display: flex; gap: 8px; padding: 10px 14px; border-top: 1px solid #d0d7de; }
    textarea { flex: 1; resize: none; font: inherit; padding: 6px; border: 1px solid #8c959f; border-radius: 6px; }
    button.send { background: var(--accent, #1f6feb); color: #fff; border: none; border-radius: 6px;
      padding: 0 14px; cursor: pointer; font: inherit; }
    button.attach { background: none; border: 1px solid #8c959f; border-radius: 6px; cursor: pointer;
      font-size: 18px; padding: 0 8px; }
    :focus-visible { outline: 3px solid #0969da; outline-offset: 2px; }
    .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }`;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(CSS);
  chat.root.adoptedStyleSheets = [sheet];

  const make = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  };
  const title = make("h2", { id: "omnihub-chat-title", text: t.title });
  const close = make("button", { type: "button", class: "close", "aria-label": t.close, text: "×" });
  // a visitor the site signed in may open their account pages (a new tab; the token is posted)
  const account = make("button", { type: "button", class: "account", text: t.account, hidden: "" });
  const status = make("p", { class: "status", role: "status" });
  const log = make("ol", { role: "log", "aria-live": "polite", "aria-label": t.history, tabindex: "0" });
  const typing = make("p", { class: "typing", "aria-live": "polite" });
  // no agent present: where replies may go instead (an address the visitor types: not proof)
  const contactInput = make("input", { id: "omnihub-chat-contact", type: "text", maxlength: "320",
    autocomplete: "email" });
  const contactForm = make("form", {},
    make("label", { for: "omnihub-chat-contact", class: "sr", text: t.contact }), contactInput,
    make("button", { type: "submit", class: "send", text: t.leave }));
  const offlineNote = make("p", { text: t.offline });
  const offline = make("div", { class: "offline", role: "region", "aria-label": t.contact, hidden: "" },
    offlineNote, contactForm);
  const box = make("textarea", { id: "omnihub-chat-message", rows: "2", maxlength: "4000" });
  const picker = make("input", { type: "file", class: "sr", tabindex: "-1", "aria-hidden": "true",
    accept: "image/png,image/jpeg,image/gif,application/pdf" });
  const attach = make("button", { type: "button", class: "attach", "aria-label": t.attach, text: "\u{1F4CE}" });
  const form = make("form", {},
    make("label", { for: "omnihub-chat-message", class: "sr", text: t.message }), box, attach, picker,
    make("button", { type: "submit", class: "send", text: t.send }));
  const panel = make("div", { class: "panel", role: "dialog", "aria-labelledby": "omnihub-chat-title", hidden: "" },
    make("header", {}, title, make("span", {}, account, close)), offline, status, log, typing, form);
  chat.root.append(panel);

  const links = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)]/g;
  const body = (text) => {
    const part = document.createDocumentFragment();
    let at = 0;
    for (const found of text.matchAll(links)) {
      part.append(text.slice(at, found.index));
      const link = make("a", { href: new URL(found[0]).href, target: "_blank", rel: "noopener noreferrer nofollow", text: found[0] });
      part.append(link);
      at = found.index + found[0].length;
    }
    part.append(text.slice(at));
    return part;
  };
  const render = (entry, waiting) => {
    const inbound = entry.direction === "inbound";
    const item = make("li", { class: `${inbound ? "in" : "out"}${waiting ? " waiting" : ""}` },
      make("span", { class: "author", text: inbound ? t.you : entry.author || t.agent }),
      entry.file ? `\u{1F4CE} ${entry.file.name}`
        : entry.contact ? t.saved.replace("{address}", () => entry.contact) : body(entry.text || ""));
    log.append(item);
    log.scrollTop = log.scrollHeight;
    return item;
  };
  const remember = (seq, entry) => {
    tab.seq = Math.max(tab.seq, seq);
    tab.entries.push([seq, entry]);
    tab.entries = tab.entries.slice(-KEPT);
    write(sessionStorage, tab);
  };
  const accept = (seq, entry) => {
    if (shown.has(seq)) return;
    shown.add(seq);
    const own = entry.client_id && mine.get(entry.client_id);
    if (own) own.classList.remove("waiting");
    else render(entry, false);
    tab.pending = tab.pending.filter((p) => p.client_id !== entry.client_id);
    remember(seq, entry);
  };
  let readSent = 0;
  const markRead = () => {
    // the visitor sees the conversation: the chat open, the page in view
    if (panel.hidden || document.visibilityState !== "visible" || tab.seq <= readSent) return;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    readSent = tab.seq;
    socket.send(JSON.stringify({ type: "read", seq: tab.seq }));
  };
  document.addEventListener("visibilitychange", markRead);
  const say = (clientId, text) => {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", client_id: clientId, text }));
    }
  };
  // an agent typing: "<name> is typing…" for 6 s after each frame, or until their message
  let typingTimer = 0;
  const typingOff = () => { clearTimeout(typingTimer); typing.textContent = ""; };
  const agentTyping = (author) => {
    const name = String(author || t.agent);
    typing.textContent = t.typing.replace("{name}", () => name);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(typingOff, 6000);
  };
  // the visitor typing: said at most every 3 s while the box has text (the hub drops more)
  let typedAt = 0;
  const typed = () => {
    if (!box.value.trim() || !socket || socket.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (now - typedAt < 3000) return;
    typedAt = now;
    socket.send(JSON.stringify({ type: "typing" }));
  };
  const newId = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

  // Server-Sent Events + POST where a proxy blocks WebSockets, shaped as a WebSocket
  // (readyState, send, close; open, message and close events) so the chat above it is the
  // same on both: the first frame sent (the hello) opens the stream, the others are POSTed
  // one at a time, in order, the stream's id in the body (never in a URL). A refused POST
  // ends the stream like a dropped socket: the chat reconnects, resumes and re-sends.
  const eventStream = () => {
    const link = new EventTarget();
    const stop = new AbortController();
    let stream = "";
    let ready;
    let queue = new Promise((resolve) => { ready = resolve; });
    const post = (path, body) => fetch(new URL(path, chat.base).href,
      { method: "POST", body, mode: "cors", cache: "no-store", signal: stop.signal });
    const end = (code, reason = "") => {
      if (link.readyState === WebSocket.CLOSED) return;
      link.readyState = WebSocket.CLOSED;
      stop.abort();
      link.dispatchEvent(new CloseEvent("close", { code, reason }));
    };
    let kind = "";
    let data = [];
    const line = (text) => { // one line of the stream, as EventSource reads it (HTML, 9.2.6)
      if (text) {
        const colon = text.indexOf(":");
        if (colon === 0) return; // a comment: the heartbeat
        const field = colon < 0 ? text : text.slice(0, colon);
        const value = colon < 0 ? "" : text.slice(colon + (text[colon + 1] === " " ? 2 : 1));
        if (field === "event") kind = value;
        else if (field === "data") data.push(value);
        return;
      }
      const [event, payload] = [kind || "message", data.join("\n")];
      kind = "";
      data = [];
      if (!payload || link.readyState === WebSocket.CLOSED) return;
      if (event === "stream") {
        stream = JSON.parse(payload).stream;
        ready();
      } else if (event === "close") {
        const closed = JSON.parse(payload);
        end(closed.code, closed.reason);
      } else {
        link.dispatchEvent(new MessageEvent("message", { data: payload }));
      }
    };
    const listen = async (hello) => {
      const answer = await post("ws/stream", hello);
      if (!answer.ok || !answer.body) throw new Error(`stream: ${answer.status}`);
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      let rest = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const lines = (rest + decoder.decode(value, { stream: true })).split("\n");
        rest = lines.pop();
        for (const text of lines) line(text.endsWith("\r") ? text.slice(0, -1) : text);
      }
      end(1006);
    };
    link.readyState = WebSocket.CONNECTING;
    let started = false;
    link.send = (text) => {
      if (link.readyState === WebSocket.CLOSED) return;
      if (!started) { // the hello opens the stream
        started = true;
        listen(text).catch(() => end(1006));
        return;
      }
      // after the stream's id came (queue starts there), one at a time; the frame as it is
      queue = queue
        .then(() => link.readyState === WebSocket.OPEN
          && post("ws/send", `{"stream":${JSON.stringify(stream)},"frame":${text}}`))
        .then((answer) => { if (answer && answer.status !== 202) end(1006); }, () => end(1006));
    };
    link.close = () => end(1000);
    setTimeout(() => { // open: ready for the hello, as a socket would be
      if (link.readyState !== WebSocket.CONNECTING) return;
      link.readyState = WebSocket.OPEN;
      link.dispatchEvent(new Event("open"));
    }, 0);
    return link;
  };

  let unopened = 0; // WebSockets that did not open, in a row
  const connect = () => {
    if (socket || refused) return;
    status.textContent = t.connecting;
    const url = new URL("ws", chat.base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = chat.transport === "sse" || tab.transport === "sse" ? eventStream() : new WebSocket(url.href);
    let opened = false;
    const late = setTimeout(() => { if (!opened) ws.close(); }, 5000);
    ws.addEventListener("open", () => { opened = true; clearTimeout(late); });
    socket = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "hello", site: chat.site, visitor: visitor.visitor || null,
        identity: chat.identity || null, after: tab.seq, language: chat.lang }));
    });
    ws.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "welcome") {
        delay = 1000;
        status.textContent = "";
        visitor.visitor = frame.visitor;
        write(localStorage, visitor);
        title.textContent = frame.name || t.title;
        if (frame.colour) {
          panel.style.setProperty("--accent", frame.colour);
          chat.button.style.background = frame.colour;
        }
        for (const p of tab.pending) say(p.client_id, p.text); // what was not acknowledged
        offline.hidden = frame.online !== false;
        account.hidden = frame.account !== true;
        if (tab.contact) showContact(tab.contact);
      } else if (frame.type === "account") {
        openAccount(frame.token);
      } else if (frame.type === "typing") {
        agentTyping(frame.author);
      } else if (frame.type === "entry") {
        if (frame.entry && frame.entry.direction === "outbound") typingOff();
        accept(frame.seq, frame.entry);
        markRead();
      } else if (frame.type === "ack" && frame.contact !== undefined) {
        tab.contact = frame.contact;
        showContact(frame.contact);
        accept(frame.seq, { direction: "inbound", contact: frame.contact, client_id: frame.client_id });
      } else if (frame.type === "ack") {
        const pending = tab.pending.find((p) => p.client_id === frame.client_id);
        const text = frame.text !== undefined ? frame.text : pending && pending.text;
        const own = mine.get(frame.client_id);
        if (own && frame.text !== undefined) own.replaceChildren(make("span", { class: "author", text: t.you }), body(frame.text));
        const sent = files.get(frame.client_id);
        accept(frame.seq, sent ? { direction: "inbound", file: sent, client_id: frame.client_id }
          : { direction: "inbound", text, client_id: frame.client_id });
      } else if (frame.type === "error") {
        const own = frame.client_id && mine.get(frame.client_id);
        if (frame.code === "retry" || frame.code === "slow_down") {
          const slow = frame.code === "slow_down";
          if (own) own.title = slow ? t.slowDown : t.failed;
          if (slow) status.textContent = t.slowDown;
          setTimeout(() => {
            const p = tab.pending.find((q) => q.client_id === frame.client_id);
            if (p) say(p.client_id, p.text);
            if (slow) status.textContent = "";
          }, slow ? Math.ceil(frame.retry_after * 1000) : 1000);
        } else if (frame.code === "not_yet") {
          status.textContent = t.notYet;
        } else if (frame.code === "bad_address") {
          status.textContent = t.badAddress;
          contactInput.focus();
        } else if (own) {
          own.classList.remove("waiting");
          own.title = frame.code === "too_long" ? t.tooLong
            : ["file_type", "too_large", "bad_file"].includes(frame.code) ? t.fileRefused
            : frame.code === "infected" ? t.infected
            : frame.message || "";
          status.textContent = own.title;
          tab.pending = tab.pending.filter((p) => p.client_id !== frame.client_id);
          write(sessionStorage, tab);
        }
      }
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(late);
      if (socket === ws) socket = null;
      if (REFUSED.has(event.code)) {
        refused = true;
        status.textContent = t.refused;
        return;
      }
      // a WebSocket that did not open twice in a row is blocked on the way: the fallback,
      // for the rest of the tab
      unopened = opened ? 0 : unopened + 1;
      if (unopened >= 2 && tab.transport !== "sse") {
        tab.transport = "sse";
        write(sessionStorage, tab);
        delay = 1000;
      }
      status.textContent = t.reconnecting;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    const clientId = newId();
    tab.pending.push({ client_id: clientId, text });
    write(sessionStorage, tab);
    mine.set(clientId, render({ direction: "inbound", text }, true));
    box.value = "";
    typedAt = 0;
    say(clientId, text);
  });
  box.addEventListener("input", typed);
  // the token goes in a form's body to the hub's page, in a new tab: never in a URL
  const openAccount = (token) => {
    const post = make("form", { method: "post", action: new URL("/me/widget", chat.base).href,
      target: "_blank", rel: "noopener", hidden: "" },
    make("input", { type: "hidden", name: "token", value: String(token) }));
    chat.root.append(post);
    post.submit();
    post.remove();
  };
  account.addEventListener("click", () => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "account" }));
  });
  const showContact = (address) => {
    offlineNote.textContent = t.saved.replace("{address}", () => address);
    contactForm.hidden = true;
  };
  contactForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const address = contactInput.value.trim();
    if (!address || !socket || socket.readyState !== WebSocket.OPEN) return;
    status.textContent = "";
    socket.send(JSON.stringify({ type: "contact", client_id: newId(), address }));
  });
  const MAX_FILE = 5 * 1024 * 1024;
  attach.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    const file = picker.files && picker.files[0];
    picker.value = "";
    if (!file) return;
    if (file.size > MAX_FILE || !picker.accept.split(",").includes(file.type)) {
      status.textContent = t.fileRefused;
      return;
    }
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      const clientId = newId();
      const data = String(reader.result).split(",", 2)[1] || "";
      files.set(clientId, { name: file.name });
      mine.set(clientId, render({ direction: "inbound", file: { name: file.name } }, true));
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "file", client_id: clientId, name: file.name,
          content_type: file.type, data }));
      }
    });
    reader.readAsDataURL(file);
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  const hide = () => {
    panel.hidden = true;
    chat.button.setAttribute("aria-expanded", "false");
    chat.button.focus();
  };
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") hide(); });
  close.addEventListener("click", hide);
  chat.toggle = () => {
    if (!panel.hidden) return hide();
    panel.hidden = false;
    chat.button.setAttribute("aria-expanded", "true");
    box.focus();
    connect();
    markRead();
  };
  // what this tab showed before a reload, then what came after it
  for (const [seq, entry] of tab.entries) {
    shown.add(seq);
    const item = render(entry, false);
    if (entry.client_id) mine.set(entry.client_id, item);
  }
  for (const p of tab.pending) mine.set(p.client_id, render({ direction: "inbound", text: p.text }, true));
})();
