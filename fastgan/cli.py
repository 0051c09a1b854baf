"""What the command lines share: help that gives each flag's default once."""

import argparse


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, except a flag without one (its help says what then)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)
