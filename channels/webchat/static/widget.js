// omnihub web chat: the loader a site embeds with one tag,
//   <script src="https://hub.example/channels/webchat/widget.js" data-site="acme" async></script>
// It adds a launcher button and nothing else: no request, no storage until the visitor opens
// the chat, which loads chat.js (versioned, cached) and connects.
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.omnihubChat) return;
  const LABELS = {
    en: "Chat with us", fr: "Discuter avec nous", de: "Chatten Sie mit uns",
    es: "Chatea con nosotros", pt: "Fale connosco", ru: "Напишите нам",
  };
  const wanted = (script.dataset.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  const lang = LABELS[wanted] ? wanted : "en";
  const host = document.createElement("div");
  const root = host.attachShadow({ mode: "open" });
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "\u{1F4AC}";
  button.setAttribute("aria-label", LABELS[lang]);
  button.setAttribute("aria-haspopup", "dialog");
  button.setAttribute("aria-expanded", "false");
  Object.assign(button.style, {
    position: "fixed", right: "20px", bottom: "20px", width: "56px", height: "56px",
    borderRadius: "50%", border: "none", cursor: "pointer", fontSize: "24px",
    color: "#fff", background: script.dataset.colour || "#1f6feb", zIndex: "2147483646",
    boxShadow: "0 2px 8px rgba(0,0,0,.3)",
  });
  root.append(button);
  // a user the site signed in: the claim its backend signed, rendered into the tag's data-user-*
  const data = script.dataset;
  const identity = data.userId && data.userSignature ? { id: data.userId,
    email: data.userEmail || undefined, expires: Number(data.userExpires), signature: data.userSignature } : null;
  const chat = {
    root, button, lang, site: data.site || "", identity,
    transport: data.transport || "", // "sse": Server-Sent Events + POST, never a WebSocket
    base: new URL(".", script.src).href, version: "__OMNIHUB_ASSET_VERSION__",
  };
  let loading = null;
  button.addEventListener("click", () => {
    loading = loading || new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = new URL(`chat.js?v=${chat.version}`, chat.base).href;
      tag.async = true;
      tag.onload = resolve;
      tag.onerror = reject;
      document.head.append(tag);
    });
    loading.then(() => chat.toggle && chat.toggle()).catch(() => { loading = null; });
  });
  window.omnihubChat = chat;
  const place = () => document.body.append(host);
  if (document.body) place(); else document.addEventListener("DOMContentLoaded", place);
})();
