// omnihub console: live timeline (SSE) and small conveniences. No framework, no build step.
// Untrusted text is only ever set with textContent; no HTML is parsed from data.
"use strict";

(function () {
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setDelivery(meta, delivery) {
    var badge = meta.querySelector(".delivery");
    var error = meta.querySelector(".delivery-error");
    if (!delivery) return;
    if (!badge) { badge = el("span", "delivery"); meta.appendChild(badge); }
    badge.textContent = delivery.state;
    badge.setAttribute("data-state", delivery.state);
    if (delivery.error) {
      if (!error) { error = el("span", "delivery-error"); badge.after(error); }
      error.textContent = delivery.error;
    } else if (error) {
      error.remove();
    }
  }

  function buildItem(it) {
    var li = el("li", "item " + it.direction + (it.reaction ? " reaction-item" : ""));
    li.setAttribute("data-event-id", it.event_id);
    li.setAttribute("data-revised", it.revised || "");
    li.setAttribute("data-reactions", it.reactions_key || "");
    li.setAttribute("data-files", it.files_key || "");
    var meta = el("div", "meta");
    if (it.channel_icon) {
      var icon = el("span", "channel-icon", it.channel_icon);
      icon.setAttribute("aria-hidden", "true");
      meta.appendChild(icon);
    }
    meta.appendChild(el("span", "channel", it.channel_label));
    meta.appendChild(el("span", "direction", it.direction));
    meta.appendChild(el("span", "kind", it.kind));
    var time = el("time", null, it.when);
    time.setAttribute("datetime", it.when_iso);
    meta.appendChild(time);
    if (it.department) meta.appendChild(el("span", "department", it.department));
    if (it.language) meta.appendChild(el("span", "language", it.language));
    setDelivery(meta, it.delivery);
    if (it.logged_by) meta.appendChild(el("span", "logged-by", "logged by " + it.logged_by));
    if (it.edited_at && !it.deleted_at) meta.appendChild(el("span", "edited", "edited"));
    li.appendChild(meta);
    if (it.deleted_at) li.appendChild(el("p", "deleted", "Deleted by the customer"));
    if (it.sent_from) li.appendChild(el("p", "sent-from", it.sent_from));
    if (it.unverified) {
      var warning = el("p", "warning unverified",
        "\u26a0 " + it.unverified + ". Not linked to any customer by this address.");
      warning.setAttribute("role", "alert");
      li.appendChild(warning);
    }
    if (it.automatic) {
      li.appendChild(el("p", "automatic", "Sent automatically: not routed, never answered automatically."));
    }
    if (it.sender_name || it.sender_handle || it.participants) {
      var sender = el("div", "sender");
      if (it.sender_name) sender.appendChild(el("span", "sender-name", it.sender_name));
      if (it.sender_handle) {
        sender.appendChild(document.createTextNode(" "));
        sender.appendChild(el("span", "sender-handle", it.sender_handle));
      }
      if (it.participants) sender.appendChild(el("span", "participants", " Cc: " + it.participants));
      li.appendChild(sender);
    }
    if (it.subject) li.appendChild(el("div", "subject", it.subject));
    if (it.reaction) {
      li.appendChild(el("p", "reaction", it.reaction.action === "unreact" || !it.reaction.emoji
        ? "Took back a reaction to a message not shown here"
        : it.reaction.emoji + " reaction to a message not shown here"));
    } else if (it.text) {
      li.appendChild(el("p", "text", it.text));
    }
    if (it.reactions && it.reactions.length) {
      var reactions = el("ul", "reactions");
      reactions.setAttribute("aria-label", "Reactions");
      it.reactions.forEach(function (r) { reactions.appendChild(el("li", null, r.emoji + " by " + r.by)); });
      li.appendChild(reactions);
    }
    if (it.earlier && it.earlier.length) {
      var earlier = el("details", "earlier");
      earlier.appendChild(el("summary", null, "Earlier versions"));
      var versions = el("ol");
      it.earlier.forEach(function (v) {
        var entry = el("li");
        entry.appendChild(el("span", "revised-at", v.when));
        entry.appendChild(document.createTextNode(
          (v.action === "delete" ? " (deleted; admins only)" : "") + ": " + v.text));
        versions.appendChild(entry);
      });
      earlier.appendChild(versions);
      li.appendChild(earlier);
    }
    if (it.history) {
      var history = el("details", "history");
      history.appendChild(el("summary", null, "Quoted history"));
      history.appendChild(el("pre", null, it.history));
      li.appendChild(history);
    }
    if (it.has_html) {
      var sent = el("a", "as-sent", "View as sent");
      sent.href = "/console/messages/" + encodeURIComponent(it.event_id) + "/html";
      sent.rel = "noopener noreferrer";
      sent.target = "_blank";
      li.appendChild(sent);
    }
    if (it.attachments && it.attachments.length) {
      var list = el("ul", "attachments");
      it.attachments.forEach(function (a) {
        var entry = el("li");
        if (a.image && /^\/console\/messages\//.test(a.image) && /^\/console\/messages\//.test(a.url || "")) {
          var thumb = el("a", "thumb");
          thumb.href = a.url;
          thumb.rel = "noopener noreferrer nofollow";
          thumb.target = "_blank";
          var img = el("img");
          img.src = a.image;
          img.alt = a.label;
          img.loading = "lazy";
          thumb.appendChild(img);
          entry.appendChild(thumb);
          entry.appendChild(document.createTextNode(" "));
        }
        if (a.url && (/^https?:\/\//.test(a.url) || /^\/console\/messages\//.test(a.url))) {
          var link = el("a", null, a.label);
          link.href = a.url;
          link.rel = "noopener noreferrer nofollow";
          link.target = "_blank";
          entry.appendChild(link);
        } else {
          entry.appendChild(document.createTextNode(a.label));
        }
        list.appendChild(entry);
      });
      li.appendChild(list);
    }
    if (it.media_unavailable) {
      li.appendChild(el("p", "warning media-unavailable", "Media could not be fetched: " + it.media_unavailable));
    }
    (it.refetch || []).forEach(function (r) {
      // a form posting the session's CSRF token, as the server-rendered item has
      var token = document.querySelector("input[name=csrf]");
      if (!token || !/^\/console\/messages\/[0-9a-f-]+\/files\/[0-9]+\/retry$/.test(r.url)) return;
      var form = el("form", "inline refetch");
      form.action = r.url;
      form.method = "post";
      var csrf = el("input");
      csrf.type = "hidden";
      csrf.name = "csrf";
      csrf.value = token.value;
      form.appendChild(csrf);
      var button = el("button", null, "Fetch again: " + r.name);
      button.type = "submit";
      form.appendChild(button);
      li.appendChild(form);
    });
    if (it.direction === "inbound" && it.channel !== "manual") {
      var reply = el("a", "reply-link", "Reply");
      reply.href = "?reply_to=" + encodeURIComponent(it.event_id) + "#reply";
      li.appendChild(reply);
    }
    return li;
  }

  function index(root, selector, attribute) {
    var found = new Map();
    root.querySelectorAll(selector).forEach(function (node) {
      found.set(node.getAttribute(attribute), node);
    });
    return found;
  }

  // returns how many inbound items it added (a message arrived: the customer stopped typing)
  function reconcile(container, data) {
    var added = 0;
    var sections = index(container, "section.conversation", "data-key");
    var items = index(container, "li.item", "data-event-id");
    var empty = container.querySelector(".empty");
    if (empty && data.conversations.length) empty.remove();
    data.conversations.forEach(function (conv) {
      var section = sections.get(conv.key);
      if (!section) {
        section = el("section", "conversation");
        section.setAttribute("data-key", conv.key);
        section.appendChild(el("h3", null, conv.title));
        section.appendChild(el("ol", "items"));
      }
      var list = section.querySelector("ol.items");
      conv.items.forEach(function (it) {
        var node = items.get(it.event_id);
        var changed = node && (node.getAttribute("data-revised") !== (it.revised || "") ||
          node.getAttribute("data-reactions") !== (it.reactions_key || "") ||
          node.getAttribute("data-files") !== (it.files_key || ""));
        if (changed) {
          var revised = buildItem(it); // edited, deleted, reacted to or a file stored since
          node.replaceWith(revised);
          node = revised;
        } else if (node) {
          setDelivery(node.querySelector(".meta"), it.delivery);
          var dept = node.querySelector(".department");
          if (it.department && !dept) {
            node.querySelector("time").after(el("span", "department", it.department));
          }
        } else {
          node = buildItem(it);
          if (it.direction === "inbound") added += 1;
        }
        list.appendChild(node); // moves an existing node into its place, in order
      });
      container.appendChild(section); // appended in order: most recent conversation first
    });
    return added;
  }

  // "Visitor is typing…" for 6 s after each typing event, or until their message arrives
  function typingNotice() {
    var notice = document.getElementById("typing");
    var timer = null;
    function off() {
      clearTimeout(timer);
      if (notice) notice.textContent = "";
    }
    return {
      on: function () {
        if (!notice) return;
        notice.textContent = "Visitor is typing\u2026";
        clearTimeout(timer);
        timer = setTimeout(off, 6000);
      },
      off: off,
    };
  }

  // the agent's typing, announced at most every 3 s on a channel that shows it
  function agentTyping(form) {
    var url = form.getAttribute("data-typing-url");
    var select = form.querySelector("#reply-channel");
    var text = form.querySelector("#reply-text");
    var csrf = form.querySelector("input[name=csrf]");
    var last = 0;
    if (!url || !select || !text || !csrf) return;
    text.addEventListener("input", function () {
      var option = select.options[select.selectedIndex];
      if (!option || !option.hasAttribute("data-typing") || !text.value.trim()) return;
      var now = Date.now();
      if (now - last < 3000) return;
      last = now;
      var body = new URLSearchParams();
      body.set("channel", option.value);
      fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf.value }, body: body })
        .catch(function () { /* a typing hint is not worth retrying */ });
    });
    form.addEventListener("submit", function () { last = 0; });
  }

  function liveTimeline(section) {
    var container = document.getElementById("conversations");
    var state = document.getElementById("live-state");
    var pending = false;
    var running = false;
    var typing = typingNotice();

    function refresh() {
      if (running) { pending = true; return; }
      running = true;
      fetch(section.getAttribute("data-json"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) { if (reconcile(container, data)) typing.off(); })
        .catch(function () { /* the next notification or reconnection retries */ })
        .finally(function () {
          running = false;
          if (pending) { pending = false; refresh(); }
        });
    }

    var source = new EventSource(section.getAttribute("data-feed"));
    source.addEventListener("ready", function () {
      state.textContent = "live";
      state.setAttribute("data-live", "on");
      refresh(); // reconcile whatever happened while (re)connecting
    });
    source.addEventListener("timeline", refresh);
    source.addEventListener("typing", typing.on);
    source.addEventListener("error", function () {
      state.textContent = "reconnecting";
      state.setAttribute("data-live", "off");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input.tz-offset").forEach(function (input) {
      input.value = String(new Date().getTimezoneOffset());
    });
    var section = document.getElementById("timeline");
    if (section && window.EventSource && window.fetch) liveTimeline(section);
    var reply = document.querySelector("form[data-typing-url]");
    if (reply && window.fetch && window.URLSearchParams) agentTyping(reply);
  });
})();
