/*
 * store_int.h - the seam between the store front (store.c) and its back
 * ends (store_sqlite.c, store_pg.c). Only common/store*.c include it.
 *
 * store.c owns struct sotp_store, parses the URL, checks the arguments that
 * every back end would check the same way, and calls the back end through
 * its ops table. A back end keeps its connection in st->be and reports
 * failures with sotp_store_seterr(); it can count on non-NULL pointers,
 * well-formed IDs and in-range lengths.
 */
#ifndef SOTP_STORE_INT_H
#define SOTP_STORE_INT_H

#include "sotp_int.h"

#define SOTP_STORE_ERR_MAX 512

struct sotp_store_ops;

struct sotp_store {
	const struct sotp_store_ops *ops;
	void *be; /* the back end's connection, NULL until opened */
	char err[SOTP_STORE_ERR_MAX];
};

/*
 * One back end. Every member is required; each has the contract of the
 * sotp_store_* function of the same name in sotp_int.h. open receives the
 * URL with its "scheme:" prefix removed; on failure it leaves the detail
 * in st->err and close is still called to release what open left in be.
 */
struct sotp_store_ops {
	const char *scheme;
	int (*open)(struct sotp_store *st, const char *target, int create);
	void (*close)(struct sotp_store *st);

	int (*token_get)(struct sotp_store *st, const char *serial,
	    struct sotp_token_rec *out);
	int (*token_insert)(
	    struct sotp_store *st, const struct sotp_token_rec *t);
	int (*token_list)(struct sotp_store *st, int unassigned_only,
	    sotp_token_rec_cb *cb, void *arg);
	int (*token_set_drift)(
	    struct sotp_store *st, const char *serial, int drift);

	int (*contract_get)(struct sotp_store *st, const char *id,
	    struct sotp_contract_rec *out);
	int (*contract_insert)(
	    struct sotp_store *st, const struct sotp_contract_rec *c);
	int (*contract_set_password)(
	    struct sotp_store *st, const char *id, const char *pwhash);
	int (*contract_set_login)(
	    struct sotp_store *st, const char *id, enum sotp_login login);
	int (*contract_set_card)(struct sotp_store *st, const char *id,
	    const uint8_t *card, size_t len);
	int (*contract_unlock)(struct sotp_store *st, const char *id);
	int (*contract_unlock_expired)(
	    struct sotp_store *st, const char *id, int64_t seen);
	int (*contract_close)(
	    struct sotp_store *st, const char *id, int *closed);

	int (*accept_step)(struct sotp_store *st, const char *serial,
	    const char *contract, int64_t step, int drift, int *won);
	int (*fail)(struct sotp_store *st, const char *contract,
	    unsigned int threshold, int64_t lock_value, unsigned int *failures,
	    int64_t *locked_until);
	int (*reset_failures)(struct sotp_store *st, const char *contract);
	int (*bind)(struct sotp_store *st, const char *contract,
	    const char *serial, enum sotp_login login, int64_t step, int drift,
	    enum sotp_bind_result *result);
	int (*unbind)(struct sotp_store *st, const char *contract, int *unbound,
	    char *serial);

	int (*state_use)(struct sotp_store *st, const uint8_t *id,
	    int64_t expires, int64_t now, int *fresh);
	int (*audit_add)(struct sotp_store *st, const struct sotp_audit_rec *r);
	int (*audit_list)(struct sotp_store *st, const char *contract,
	    int64_t since, int64_t until, sotp_audit_cb *cb, void *arg);

	int (*begin)(struct sotp_store *st);
	int (*commit)(struct sotp_store *st);
	void (*rollback)(struct sotp_store *st);
};

/* Length of a challenge state id (sotp_store_state_use). */
#define SOTP_STORE_STATE_ID_LEN 16

/* Replaces st's error text. Never pass a secret or a bound value. */
void sotp_store_seterr(struct sotp_store *st, const char *fmt, ...)
    SOTP_PRINTF(2, 3);

/* The back ends store.c can dispatch to. */
extern const struct sotp_store_ops sotp_store_sqlite_ops;
extern const struct sotp_store_ops sotp_store_pg_ops;       /* postgresql: */
extern const struct sotp_store_ops sotp_store_postgres_ops; /* postgres: */

#endif /* SOTP_STORE_INT_H */
