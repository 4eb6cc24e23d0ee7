/*
 * internal.h — what the fleet module's files share (bus.c, warm.c, l2.c). Not for other
 * modules: they see fleet.h.
 */
#ifndef FG_FLEET_INTERNAL_H
#define FG_FLEET_INTERNAL_H

#include "fleet/fleet.h"
#include "redis/redis.h"

struct evbuffer;

/* The bus thread's base and client (NULL before it is made); on the bus thread only. */
struct event_base *fg_fleet_bus_base(void);
struct fg_redis *fg_fleet_bus_redis(void);

/* warm.c, on the bus thread: set up the hot record's upkeep and, when the process starts
 * (first), the warm start; the client is ready; undo it all. */
void fg_fleet_warm_setup(const struct fg_config *cfg, const struct fg_addr *target, bool first);
void fg_fleet_warm_on_ready(void);
void fg_fleet_warm_teardown(void);

/* l2.c: a shared-tier record into b, and back (slices point into data; false when it
 * is not a record of this version, or is cut or damaged). */
void fg_fleet_l2_encode(struct evbuffer *b, const struct fg_fleet_l2_record *r);
bool fg_fleet_l2_decode(const char *data, size_t len, struct fg_fleet_l2_record *r);

/* "fg:fleet:{<channel>}:hot" */
void fg_fleet_hot_key_name(const char *channel, char *out, size_t cap);

#endif /* FG_FLEET_INTERNAL_H */
