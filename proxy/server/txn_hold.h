/*
 * txn_hold.h — a stage's hold on a transaction (txn.h): what the stage must let go of
 * when the transaction ends is released by the stage's own function, run once from the
 * transaction's list of holds (fg_txn_hold, fg_txn_put).
 */
#ifndef FG_SERVER_TXN_HOLD_H
#define FG_SERVER_TXN_HOLD_H

#include <stdbool.h>

struct fg_txn;

struct fg_txn_hold {
    void (*release)(struct fg_txn *t);
    struct fg_txn_hold *next;
    bool held;
};

#endif /* FG_SERVER_TXN_HOLD_H */
