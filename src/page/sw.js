// Tellijn's free-places page, offline once loaded: the page and the last public numbers it
// fetched are kept on this device and shown, marked as offline, when the server cannot be
// reached. Only anonymous GETs of these three addresses; nothing sent with credentials.
"use strict";
const CACHE = "tellijn-page-v1";
const KEEP = ["/", "/api/v1/rooms", "/api/v1/buildings"];
// The page itself was loaded before this worker ran: keep a copy now.
self.addEventListener("install", ev => {
  self.skipWaiting();
  ev.waitUntil(caches.open(CACHE).then(c => c.add("/")).catch(() => {}));
});
self.addEventListener("activate", ev => ev.waitUntil(self.clients.claim()));
self.addEventListener("fetch", ev => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin || !KEEP.includes(url.pathname)
      || req.headers.has("Authorization")) {
    return;
  }
  // The page under any query (?screen=, ?lang=) is one entry; the API only without one.
  if (url.pathname !== "/" && url.search !== "") return;
  ev.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const fresh = await fetch(req);
      if (fresh.ok) await cache.put(url.pathname, fresh.clone());
      return fresh;
    } catch (offline) {
      const kept = await cache.match(url.pathname);
      if (!kept) throw offline;
      const headers = new Headers(kept.headers);
      headers.set("X-Tellijn-Offline", "1");
      return new Response(await kept.blob(), { status: kept.status, headers });
    }
  })());
});
