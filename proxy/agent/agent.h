/*
 * agent.h — flashgate-agent, the local queue agent (issue 6): the durable spool, AWS SigV4
 * signing, and (to come) the SQS sink, credentials and drain mode.
 */
#ifndef FG_AGENT_H
#define FG_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- spool (spool.c) ------------------------------------------------------------------ */
/* SPOOL-API-BEGIN */
/* SPOOL-API-END */

/* ---- SigV4 (sigv4.c) ------------------------------------------------------------------ */
/* SIGV4-API-BEGIN */
/* SIGV4-API-END */

#endif /* FG_AGENT_H */
