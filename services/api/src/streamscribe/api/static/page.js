// streamscribe's page: the only script. Everything works without it; it adds the transcript's
// highlight and click-to-seek on a media page, and the library's live progress.
(function () {
  "use strict";
  var TERMINAL = ["indexed", "failed"];
  var BUSY = { requested: "Waiting to start", transcribing: "Transcribing" };

  function watch(player) {
    var start = parseFloat(player.dataset.start || "0");
    var lines = Array.prototype.slice.call(document.querySelectorAll(".transcript a[data-start]"));
    var current = document.querySelector('.transcript a[aria-current="true"]');

    // the media fragment (#t=) usually does this; some servers' answers make it be ignored
    function startAt() {
      if (Math.abs(player.currentTime - start) > 0.5) player.currentTime = start;
    }
    if (player.readyState >= 1) startAt();
    else player.addEventListener("loadedmetadata", startAt, { once: true });

    function highlight() {
      var now = player.currentTime + 0.05, found = null;
      for (var i = 0; i < lines.length && parseFloat(lines[i].dataset.start) <= now; i++) {
        found = lines[i];
      }
      if (found === current) return;
      if (current) current.removeAttribute("aria-current");
      if (found) found.setAttribute("aria-current", "true");
      current = found;
    }
    player.addEventListener("timeupdate", highlight);
    player.addEventListener("seeked", highlight);
    player.addEventListener("error", function () {
      var note = document.getElementById("player-error");
      if (note) note.hidden = false;
    });
    document.addEventListener("click", function (event) {
      var line = event.target.closest && event.target.closest(".transcript a[data-start]");
      if (!line || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      player.currentTime = parseFloat(line.dataset.start);
      var playing = player.play();
      if (playing && playing.catch) playing.catch(function () {});
      history.replaceState(null, "", line.href);
    });
  }

  function library(list) {
    function busy() {
      return Array.prototype.some.call(list.querySelectorAll("li[data-media-id]"), function (row) {
        return TERMINAL.indexOf(row.dataset.state) < 0;
      });
    }
    function find(root, id) {
      return root.querySelector('li[data-media-id="' + CSS.escape(id) + '"]');
    }
    function progress(row, record) {
      var bar = row.querySelector("progress"), total = record.chunks.total;
      if (!bar) return;
      bar.max = total || 1;
      if (total) bar.value = record.chunks.stored; else bar.removeAttribute("value");
      if (BUSY[record.state]) {
        row.dataset.state = record.state;
        row.querySelector(".state").textContent = BUSY[record.state];
      }
      row.querySelector(".count").textContent =
        record.chunks.stored + " of " + (total === null ? "?" : total) + " chunks";
    }
    // a media that just finished: its row as the server renders it (state and failure in words)
    function refresh(ids) {
      return fetch(location.pathname, { credentials: "same-origin" })
        .then(function (answer) { return answer.ok ? answer.text() : ""; })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          ids.forEach(function (id) {
            var row = find(list, id), replacement = find(fresh, id);
            if (row && replacement) row.replaceWith(document.importNode(replacement, true));
          });
        });
    }
    function tick() {
      if (!busy()) return;
      fetch("/media?limit=" + (list.dataset.limit || 100), { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (answer) { return answer.ok ? answer.json() : []; })
        .then(function (records) {
          var finished = [];
          records.forEach(function (record) {
            var row = find(list, record.media_id);
            if (!row || TERMINAL.indexOf(row.dataset.state) >= 0) return;
            progress(row, record);
            if (TERMINAL.indexOf(record.state) >= 0) finished.push(record.media_id);
          });
          return finished.length ? refresh(finished) : null;
        })
        .catch(function () {})
        .then(function () { setTimeout(tick, 1000); });
    }
    setTimeout(tick, 1000);
  }

  var player = document.getElementById("player");
  if (player) watch(player);
  var list = document.getElementById("library");
  if (list) library(list);
})();
