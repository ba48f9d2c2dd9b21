/* The subcommands of gridrun other than run and validate. */
#ifndef GR_CMD_CMD_H
#define GR_CMD_CMD_H

/* Each takes argc/argv starting at the subcommand's name and returns the
 * process exit code. */
int gr_cmd_status (int argc, char **argv);
int gr_cmd_launch (int argc, char **argv);
int gr_cmd_topo (int argc, char **argv);
int gr_cmd_ckpt (int argc, char **argv);
int gr_cmd_submit (int argc, char **argv);
int gr_cmd_report (int argc, char **argv);

#endif
